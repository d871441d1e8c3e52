/**
 * `attentionBackward(dO, q, k, v, forward, options)`: the gradients of `attention` with
 * respect to q, k and v, for the forward call that produced `forward` (made with
 * `saveForBackward: true`). The forward's kept sets (layout, thresholds) and row maxima are
 * constants: selection has no gradient (docs/backward.md). One entry point; the backend is
 * chosen by the registry like the forward's.
 */
import { types } from 'node:util';
import { OptionError, ShapeError } from './errors';
import { checkValues } from './finite';
import { ownInputs, releaseInputs } from './ownership';
import { checkFiniteInputs, classifyInputs, Problem } from './problem';
import { pickBackwardBackend } from './backends/registry';
import { checkTensorFinite, DeviceStorage, Tensor } from './tensor';
import type { AttentionResult, BackendName } from './types';
import { checkBoolean, checkInt, checkKeys, checkOneOf, describe } from './validate';

export interface BackwardOptions {
  /** 'auto' (default: the forward's backend when it has a backward pass, then cuda, cpu, js) or a backend name. */
  backend?: BackendName;
  /** Reject NaN or infinite values in dO, q, k, v (ERR_VALUE). Default true. */
  checkFinite?: boolean;
  /** Gradients bit-identical from run to run on every backend (the device then sums dq without atomics). Default false. */
  deterministic?: boolean;
  /** Threads the cpu backend computes on, 1..1024. Default: the forward's, else the machine's hardware threads. */
  threads?: number;
}

export interface BackwardResult<T = Float32Array | Tensor> {
  /** Same shape and layout as q. */
  dq: T;
  /** Same shape and layout as k (summed over the query heads of each kv group). */
  dk: T;
  dv: T;
  backend: Exclude<BackendName, 'auto'>;
}

type Home = { dims: readonly number[]; location: Tensor['location'] };

export async function attentionBackward(dO: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, forward: AttentionResult, options?: BackwardOptions): Promise<BackwardResult<Float32Array>>;
export async function attentionBackward(dO: Tensor, q: Tensor, k: Tensor, v: Tensor, forward: AttentionResult, options?: BackwardOptions): Promise<BackwardResult<Tensor>>;
export async function attentionBackward(
  dO: Float32Array | Tensor, q: Float32Array | Tensor, k: Float32Array | Tensor, v: Float32Array | Tensor, forward: AttentionResult, options: BackwardOptions = {},
): Promise<BackwardResult> {
  if (typeof forward !== 'object' || forward === null || forward.saved === undefined) {
    throw new OptionError('forward must be the result of attention(..., { saveForBackward: true })', 'forward');
  }
  if (typeof options !== 'object' || options === null) throw new OptionError('options must be an object', 'options');
  checkKeys('options', options, ['backend', 'checkFinite', 'deterministic', 'threads']);
  const requested = checkOneOf('backend', options.backend, ['auto', 'js', 'cpu', 'cuda', 'cuda-emu'], 'auto');
  const checkFinite = checkBoolean('checkFinite', options.checkFinite, true);
  const deterministic = checkBoolean('deterministic', options.deterministic, false);
  const saved = forward.saved;
  const forwardProblem = saved.problem as Problem;
  const threads = options.threads === undefined ? forwardProblem.threads : checkInt('threads', options.threads, 1, 1024);
  const inputs = classifyInputs(q, k, v);
  const sizes = { q: forwardProblem.batch * forwardProblem.heads * forwardProblem.seqQ * forwardProblem.headDim, k: forwardProblem.batch * forwardProblem.kvHeads * forwardProblem.seqK * forwardProblem.headDim };
  const lengthOf = (x: Float32Array | Tensor) => (x instanceof Tensor ? x.size : x.length);
  for (const [name, x, want] of [['q', inputs.q, sizes.q], ['k', inputs.k, sizes.k], ['v', inputs.v, sizes.k]] as const) {
    if (lengthOf(x) !== want) throw new ShapeError(`${name} holds ${lengthOf(x)} values; the forward's shape needs ${want}`, name);
  }
  const dOk = inputs.kind === 'tensor' ? dO instanceof Tensor && !dO.disposed && dO.location === inputs.q.location : types.isFloat32Array(dO);
  if (!dOk) throw new OptionError(`dO must be ${inputs.kind === 'tensor' ? `a Tensor on '${inputs.q.location}'` : 'a Float32Array'} like q, got ${describe(dO)}`, 'dO');
  if (lengthOf(dO) !== sizes.q) throw new ShapeError(`dO holds ${lengthOf(dO)} values; it must have q's shape (${sizes.q})`, 'dO');
  const { name, backend, problem } = pickBackwardBackend({ ...forwardProblem, threads }, requested, forward.backend);

  // Own copies of everything before the first await (docs/contract.md#errors-and-input-ownership); where the gradients go, too.
  const homes: Home[] | null = inputs.kind === 'tensor' ? ([inputs.q, inputs.k, inputs.v] as Tensor[]).map((t) => ({ dims: t.dims, location: t.location })) : null;
  const own = ownInputs(inputs);
  const grad = ownGradient(dO as Float32Array | Tensor);
  try {
    if (checkFinite) {
      // dO in float32 (gradients are float32 everywhere); q, k, v as the forward's backend converts them.
      const dOCheck = grad instanceof Tensor ? checkTensorFinite('dO', grad, 'float32') : Promise.resolve(checkValues('dO', grad, 'float32'));
      const settled = await Promise.allSettled([checkFiniteInputs(own, problem.dtype), dOCheck]);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
    const g = await backend.backward!(problem, { layout: saved.layout, thresholds: saved.thresholds, lse: saved.lse }, own, { dO: grad, deterministic });
    const [dq, dk, dv] = await Promise.all([place(g.dq, homes?.[0]), place(g.dk, homes?.[1]), place(g.dv, homes?.[2])]);
    return { dq, dk, dv, backend: name };
  } finally {
    releaseInputs(own);
    if (grad instanceof Tensor && grad.storage instanceof DeviceStorage) grad.dispose();
  }
}

/** The call's own dO: host data copied, a device tensor shared (as ownInputs does for q, k, v). */
function ownGradient(dO: Float32Array | Tensor): Float32Array | Tensor {
  if (!(dO instanceof Tensor)) return dO.slice();
  const s = dO.storage;
  return s instanceof DeviceStorage ? new Tensor(new DeviceStorage(s.location, s.native.share()), dO.dims) : Tensor.fromFloat32(dO.data.slice(), dO.dims);
}

/** Gradients live where their inputs live, as float32 (a host-computed gradient of device inputs goes back up). */
async function place(x: Float32Array | Tensor, home: Home | undefined): Promise<Float32Array | Tensor> {
  if (!home || x instanceof Tensor) return x;
  return home.location === 'cpu' ? Tensor.fromFloat32(x, home.dims) : Tensor.upload(x, home.dims, { type: 'float32', location: home.location });
}
