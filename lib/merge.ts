/**
 * `mergeAttention(parts)`: attention over disjoint key sets, combined by their LSE:
 * `lse = ln Σ_p e^{lse_p}`, `O = Σ_p e^{lse_p - lse} O_p`. A part with `lse = -inf` (no key)
 * adds nothing; rows empty in every part give 0 and -inf. This is how split-KV combines its
 * partial results, and how a user combines shards of one sequence held in several places.
 * Parts on a device (float32 Tensors) merge there, through the combine kernel of split-KV
 * decode (cuda/decode/combine_kernel.cuh), and resolve to device tensors.
 *
 * A NaN or +Infinity LSE, or (with `checkFinite`, the default) a NaN or infinite output value,
 * is ERR_VALUE naming the part, never a silently NaN result: device LSEs are read back to be
 * checked (one value per row), device outputs are scanned on the device.
 */
import { types } from 'node:util';
import { mergeOnDevice } from './backends/device-decode';
import { DeviceStorage } from './backends/device-storage';
import { DtypeError, OptionError, ShapeError, ValueError } from './errors';
import { checkValues } from './finite';
import { checkTensorsFinite, Tensor } from './tensor';
import { describe } from './validate';

export interface AttentionPart {
  /** [rows, headDim] in any row order both parts share (e.g. [batch, heads, m, headDim]). */
  output: Float32Array;
  /** [rows]: natural-log sum of exponentials of the part. */
  lse: Float32Array;
}

/** A part on a device: float32 tensors, output [rows, headDim] in any dims, lse holding one value per row. */
export interface DeviceAttentionPart {
  output: Tensor;
  lse: Tensor;
}

export interface MergeOptions {
  /** Reject NaN or infinite output values (ERR_VALUE naming the part); default true. LSEs are always checked. */
  checkFinite?: boolean;
}

export function mergeAttention(parts: readonly AttentionPart[], options?: MergeOptions): { output: Float32Array; lse: Float32Array };
export function mergeAttention(parts: readonly DeviceAttentionPart[], options?: MergeOptions): Promise<{ output: Tensor; lse: Tensor }>;
export function mergeAttention(
  parts: readonly (AttentionPart | DeviceAttentionPart)[],
  options: MergeOptions = {},
): { output: Float32Array; lse: Float32Array } | Promise<{ output: Tensor; lse: Tensor }> {
  if (!Array.isArray(parts) || parts.length === 0) throw new OptionError('mergeAttention needs a non-empty array of { output, lse } parts', 'parts');
  if (typeof options !== 'object' || options === null) throw new OptionError(`options must be an object, got ${describe(options)}`, 'options');
  const checkFinite = options.checkFinite ?? true;
  if (typeof checkFinite !== 'boolean') throw new OptionError(`options.checkFinite must be a boolean, got ${describe(checkFinite)}`, 'options.checkFinite');
  const first = parts[0] as Partial<DeviceAttentionPart> | null;
  if (typeof first === 'object' && first !== null && first.output instanceof Tensor) return mergeDevice(parts as readonly DeviceAttentionPart[], checkFinite);
  return mergeHost(parts as readonly AttentionPart[], checkFinite);
}

/** An LSE is finite, or -Infinity for a part with no key in that row. */
function checkLse(i: number, lse: Float32Array): void {
  for (let r = 0; r < lse.length; r++) {
    const l = lse[r];
    if (Number.isNaN(l) || l === Infinity) throw new ValueError(`parts[${i}].lse[${r}] is ${l}; an LSE is finite or -Infinity (an empty part)`, `parts[${i}].lse`);
  }
}

async function mergeDevice(parts: readonly DeviceAttentionPart[], checkFinite: boolean): Promise<{ output: Tensor; lse: Tensor }> {
  const storages = parts.map((part, i) => {
    if (typeof part !== 'object' || part === null) throw new OptionError(`parts[${i}] must be { output, lse }, got ${describe(part)}`, `parts[${i}]`);
    return (['output', 'lse'] as const).map((key) => {
      const t = part[key];
      if (!(t instanceof Tensor)) throw new DtypeError(`parts[${i}].${key} must be a Tensor like parts[0].output, got ${describe(t)}`, `parts[${i}].${key}`);
      const st = t.storage;
      if (!(st instanceof DeviceStorage)) throw new DtypeError(`parts[${i}].${key} is a cpu tensor; merge host parts as Float32Arrays`, `parts[${i}].${key}`);
      if (st.type !== 'float32') throw new DtypeError(`parts[${i}].${key} is ${st.type}; attention parts are float32`, `parts[${i}].${key}`);
      return st;
    });
  });
  const location = storages[0][0].location;
  storages.forEach((pair, i) => {
    if (pair.some((st) => st.location !== location)) throw new OptionError(`parts[${i}] is not on '${location}' like parts[0]`, `parts[${i}]`);
  });
  const rows = parts[0].lse.size;
  const size = parts[0].output.size;
  if (size % rows !== 0) throw new ShapeError(`parts[0]: output holds ${size} floats, not a whole number of rows for ${rows} LSE values`, 'parts[0].output');
  parts.forEach((part, i) => {
    if (part.lse.size !== rows || part.output.size !== size) throw new ShapeError(`parts[${i}] has ${part.lse.size} rows of ${part.output.size / Math.max(1, part.lse.size)}; parts[0] has ${rows} of ${size / rows}`, `parts[${i}]`);
  });
  // The checks read the storages taken above, so a part disposed meanwhile fails the merge below.
  const lses = await Promise.all(storages.map((pair) => pair[1].read()));
  lses.forEach((lse, i) => checkLse(i, lse));
  if (checkFinite) {
    await checkTensorsFinite(parts.map((part, i) => [`parts[${i}].output`, part.output] as const), 'float32');
  }
  const r = await mergeOnDevice(location, storages.map((p) => p[0].native), storages.map((p) => p[1].native), size / rows);
  return { output: new Tensor(new DeviceStorage(location, r.output), parts[0].output.dims), lse: new Tensor(new DeviceStorage(location, r.lse), parts[0].lse.dims) };
}

function mergeHost(parts: readonly AttentionPart[], checkFinite: boolean): { output: Float32Array; lse: Float32Array } {
  parts.forEach((part, i) => {
    if (typeof part !== 'object' || part === null) throw new OptionError(`parts[${i}] must be { output, lse }, got ${describe(part)}`, `parts[${i}]`);
    if (!types.isFloat32Array(part.output)) throw new ShapeError(`parts[${i}].output must be a Float32Array, got ${describe(part.output)}`, `parts[${i}].output`);
    if (!types.isFloat32Array(part.lse)) throw new ShapeError(`parts[${i}].lse must be a Float32Array, got ${describe(part.lse)}`, `parts[${i}].lse`);
  });
  const rows = parts[0].lse.length;
  const size = parts[0].output.length;
  if (rows === 0 || size % rows !== 0) throw new ShapeError(`parts[0]: output holds ${size} floats, not a whole number of rows for ${rows} LSE values`, 'parts[0].output');
  const D = size / rows;
  parts.forEach((part, i) => {
    if (part.lse.length !== rows || part.output.length !== size) {
      throw new ShapeError(`parts[${i}] has ${part.lse.length} rows of ${part.output.length / Math.max(1, part.lse.length)}; parts[0] has ${rows} of ${D}`, `parts[${i}]`);
    }
    checkLse(i, part.lse);
    if (checkFinite) checkValues(`parts[${i}].output`, part.output, 'float32');
  });
  const output = new Float32Array(size);
  const lse = new Float32Array(rows);
  const acc = new Float64Array(D);
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (const part of parts) mx = Math.max(mx, part.lse[r]);
    if (mx === -Infinity) {
      lse[r] = -Infinity;
      continue;
    }
    let sum = 0;
    for (const part of parts) sum += Math.exp(part.lse[r] - mx);
    const total = mx + Math.log(sum);
    lse[r] = total;
    acc.fill(0);
    for (const part of parts) {
      const w = Math.exp(part.lse[r] - total);
      if (w === 0) continue;
      for (let d = 0; d < D; d++) acc[d] += w * part.output[r * D + d];
    }
    output.set(acc, r * D);
  }
  return { output, lse };
}
