/**
 * A call computes from what it checked. Host data (Float32Arrays, cpu Tensors' data, a passed
 * layout's arrays) is copied synchronously, before the call returns its promise, so that what
 * the caller does afterwards (fill, transfer, reuse the buffer) cannot reach the work. The
 * copy is O(inputs), small next to attention's O(Nq x Nk x D). Device tensors are not
 * copied: the call holds its own handle on their memory (`share()`), so the caller's
 * `dispose()` during the call releases only the caller's handle; `releaseInputs` drops the
 * call's handles when it ends.
 */
import { types } from 'node:util';
import { OptionError } from './errors';
import { BlockLayout } from './layout';
import type { Inputs } from './problem';
import { DeviceStorage, Tensor } from './tensor';

export function ownInputs(inputs: Inputs): Inputs {
  if (inputs.kind === 'host') return { kind: 'host', q: inputs.q.slice(), k: inputs.k.slice(), v: inputs.v.slice() };
  const own = (t: Tensor) => {
    const s = t.storage;
    if (s instanceof DeviceStorage) return new Tensor(new DeviceStorage(s.location, s.native.share()), t.dims);
    return Tensor.fromFloat32(t.data.slice(), t.dims);
  };
  // One owned tensor per distinct input (k stands in for v in buildBlockLayout; a caller may pass one tensor twice).
  const made = new Map<Tensor, Tensor>();
  const once = (t: Tensor) => made.get(t) ?? made.set(t, own(t)).get(t)!;
  return { kind: 'tensor', q: once(inputs.q), k: once(inputs.k), v: once(inputs.v) };
}

/**
 * A layout's own copy, with its arrays' types checked (the BlockLayout constructor trusts its
 * arguments, so plain arrays, Float64Arrays or fractional values could reach it).
 */
export function ownLayout(layout: BlockLayout): BlockLayout {
  const want = [
    ['offsets', layout.offsets, types.isInt32Array, 'an Int32Array'],
    ['indices', layout.indices, types.isInt32Array, 'an Int32Array'],
    ['flags', layout.flags, types.isUint8Array, 'a Uint8Array'],
  ] as const;
  for (const [key, value, is, what] of want) {
    if (!is(value)) throw new OptionError(`layout.${key} must be ${what}, got ${value === null ? 'null' : typeof value === 'object' ? (value as object).constructor?.name : typeof value}`, `layout.${key}`);
  }
  return new BlockLayout(layout.geometry, layout.offsets.slice(), layout.indices.slice(), layout.flags.slice());
}

/** Drop the call's own handles on device inputs (host copies are left to the collector). */
export function releaseInputs(owned: Inputs): void {
  if (owned.kind !== 'tensor') return;
  for (const t of new Set([owned.q, owned.k, owned.v])) if (t.storage instanceof DeviceStorage) t.dispose();
}
