/**
 * `attentionBackward(dO, q, k, v, forward, options)`: the gradients of `attention` with
 * respect to q, k and v, for the forward call that produced `forward` (made with
 * `saveForBackward: true`). The forward's kept sets (layout, thresholds) and row maxima are
 * constants: selection has no gradient (docs/contract.md#backward).
 */
import { types } from 'node:util';
import { OptionError, ShapeError } from './errors';
import { checkValues } from './finite';
import { ownInputs, releaseInputs } from './ownership';
import { classifyInputs, Inputs, Problem } from './problem';
import { layoutFor } from './reference';
import { backward, Gradients } from './reference/backward';
import { Tensor } from './tensor';
import type { AttentionResult, BackendName } from './types';
import { checkBoolean, checkKeys, checkOneOf, describe } from './validate';

export interface BackwardOptions {
  /** 'auto' or 'js' in this version. */
  backend?: BackendName;
  /** Reject NaN or infinite values in dO, q, k, v (ERR_VALUE). Default true. */
  checkFinite?: boolean;
}

export interface BackwardResult<T = Float32Array | Tensor> {
  /** Same shape and layout as q. */
  dq: T;
  /** Same shape and layout as k (summed over the query heads of each kv group). */
  dk: T;
  dv: T;
  backend: 'js';
}

export async function attentionBackward(dO: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, forward: AttentionResult, options?: BackwardOptions): Promise<BackwardResult<Float32Array>>;
export async function attentionBackward(dO: Tensor, q: Tensor, k: Tensor, v: Tensor, forward: AttentionResult, options?: BackwardOptions): Promise<BackwardResult<Tensor>>;
export async function attentionBackward(
  dO: Float32Array | Tensor, q: Float32Array | Tensor, k: Float32Array | Tensor, v: Float32Array | Tensor, forward: AttentionResult, options: BackwardOptions = {},
): Promise<BackwardResult> {
  if (typeof forward !== 'object' || forward === null || forward.saved === undefined) {
    throw new OptionError('forward must be the result of attention(..., { saveForBackward: true })', 'forward');
  }
  if (typeof options !== 'object' || options === null) throw new OptionError('options must be an object', 'options');
  checkKeys('options', options, ['backend', 'checkFinite']);
  const backend = checkOneOf('backend', options.backend, ['auto', 'js', 'cpu', 'cuda', 'cuda-emu'], 'auto');
  if (backend !== 'auto' && backend !== 'js') throw new OptionError(`the backward pass runs on the js backend in this version, not '${backend}'`, 'backend');
  const saved = forward.saved;
  const p = saved.problem as Problem;
  const inputs = classifyInputs(q, k, v);
  const sizes = { q: p.batch * p.heads * p.seqQ * p.headDim, k: p.batch * p.kvHeads * p.seqK * p.headDim };
  const lengthOf = (x: Float32Array | Tensor) => (x instanceof Tensor ? x.size : x.length);
  for (const [name, x, want] of [['q', inputs.q, sizes.q], ['k', inputs.k, sizes.k], ['v', inputs.v, sizes.k]] as const) {
    if (lengthOf(x) !== want) throw new ShapeError(`${name} holds ${lengthOf(x)} values; the forward's shape needs ${want}`, name);
  }
  const dOk = inputs.kind === 'tensor' ? dO instanceof Tensor && !dO.disposed : types.isFloat32Array(dO);
  if (!dOk) throw new OptionError(`dO must be ${inputs.kind === 'tensor' ? 'a Tensor' : 'a Float32Array'} like q, got ${describe(dO)}`, 'dO');
  if (lengthOf(dO) !== sizes.q) throw new ShapeError(`dO holds ${lengthOf(dO)} values; it must have q's shape (${sizes.q})`, 'dO');

  // Own copies of everything, checked, before the first await; where the gradients go, too.
  const homes = inputs.kind === 'tensor' ? ([inputs.q, inputs.k, inputs.v] as Tensor[]).map((t) => ({ dims: t.dims, location: t.location })) : null;
  const own = ownInputs(inputs);
  const grad = (dO instanceof Tensor ? (dO.location === 'cpu' ? dO.data : null) : dO)?.slice() ?? null;
  const host = async (x: Inputs['q']) => (x instanceof Tensor ? (x.location === 'cpu' ? x.data : x.download()) : x);
  const checkFinite = checkBoolean('checkFinite', options.checkFinite, true);
  if (checkFinite && grad) checkValues('dO', grad, 'float32');
  if (checkFinite && own.kind === 'host') for (const name of ['q', 'k', 'v'] as const) checkValues(name, own[name], 'float32');

  let hq: Float32Array, hk: Float32Array, hv: Float32Array, hdO: Float32Array;
  try {
    [hq, hk, hv, hdO] = await Promise.all([host(own.q), host(own.k), host(own.v), grad ?? (dO as Tensor).download()]);
  } finally {
    releaseInputs(own);
  }
  if (checkFinite && own.kind === 'tensor') {
    for (const [name, x] of [['q', hq], ['k', hk], ['v', hv], ['dO', hdO]] as const) checkValues(name, x, 'float32');
  }
  const layout = saved.layout ?? layoutFor(p, hq, hk);
  const g: Gradients = backward(p, layout, saved.thresholds, hq, hk, hv, hdO);
  if (!homes) return { ...g, backend: 'js' };
  // Gradients live where their inputs live (float32 tensors).
  const wrap = (x: Float32Array, like: { dims: readonly number[]; location: Tensor['location'] }) =>
    like.location === 'cpu' ? Tensor.fromFloat32(x, like.dims) : Tensor.upload(x, like.dims, { type: 'float32', location: like.location });
  const [dq, dk, dv] = await Promise.all([wrap(g.dq, homes[0]), wrap(g.dk, homes[1]), wrap(g.dv, homes[2])]);
  return { dq, dk, dv, backend: 'js' };
}
