/** The public entry points: `attention` and `buildBlockLayout`. */
import { chooseBackend } from './backends/registry';
import { OptionError } from './errors';
import { BlockLayout } from './layout';
import { ownInputs, ownLayout, releaseInputs } from './ownership';
import { checkFiniteInputs, classifyInputs, resolveProblem } from './problem';
import { Tensor } from './tensor';
import type { AttentionOptions, AttentionResult } from './types';

/**
 * Multi-head attention with the sparse structure the options describe (dense when they
 * describe none). Inputs are three Float32Arrays with `options.shape`, or three Tensors; the
 * output comes back in the same form. Every check runs before any work, and the result is
 * only returned whole: a rejected call has written nothing.
 */
export async function attention(q: Float32Array, k: Float32Array, v: Float32Array, options: AttentionOptions): Promise<AttentionResult<Float32Array>>;
export async function attention(q: Tensor, k: Tensor, v: Tensor, options?: AttentionOptions): Promise<AttentionResult<Tensor>>;
export async function attention(q: Float32Array | Tensor, k: Float32Array | Tensor, v: Float32Array | Tensor, options: AttentionOptions = {}): Promise<AttentionResult> {
  const inputs = classifyInputs(q, k, v);
  const { name, backend, problem } = chooseBackend(resolveProblem(inputs, options), inputs);
  // Where the output goes, read now: the caller may dispose q while the call runs.
  const home = inputs.kind === 'tensor' ? { dims: inputs.q.dims, location: inputs.q.location } : null;
  const owned = ownInputs(inputs);
  let r;
  try {
    if (problem.checkFinite) await checkFiniteInputs(owned, problem.dtype);
    // The backward pass needs the LSE and, with top-k, the thresholds: compute them when saving.
    const run = problem.saveForBackward ? { ...problem, returnLse: true, returnThresholds: problem.returnThresholds || problem.topK !== null } : problem;
    r = await backend.attention(run, owned);
  } finally {
    releaseInputs(owned);
  }
  // The output lives where the inputs live: a host-computed result for device inputs goes back up.
  let output: Float32Array | Tensor = r.output;
  if (home && !(output instanceof Tensor)) {
    const host = output;
    output = home.location === 'cpu' ? Tensor.fromFloat32(host, home.dims) : await Tensor.upload(host, home.dims, { type: 'float32', location: home.location });
  }
  const result: AttentionResult = { output, stats: r.stats, backend: name };
  if (r.lse && problem.returnLse) result.lse = r.lse;
  if (r.thresholds && problem.returnThresholds) result.thresholds = r.thresholds;
  if (problem.saveForBackward) {
    // Copies: the result's own layout and arrays are the caller's to change.
    const layout = r.layout ? ownLayout(r.layout) : null;
    result.saved = Object.freeze({
      problem: Object.freeze({ ...problem, layout, selection: null }),
      layout,
      thresholds: problem.topK ? r.thresholds!.slice() : null,
      lse: r.lse!.slice(),
    });
  }
  // A passed layout comes back as the caller's object (the call computed from its own copy).
  if (r.layout) result.layout = options.layout ?? r.layout;
  return result;
}

/**
 * The block layout `attention` would use for these inputs and options (window, sinks and the
 * block selection), to inspect, store or pass back as `options.layout`. `v` is not needed.
 */
export async function buildBlockLayout(q: Float32Array | Tensor, k: Float32Array | Tensor, options: AttentionOptions): Promise<BlockLayout> {
  if (options?.layout !== undefined) throw new OptionError('buildBlockLayout builds a layout; do not pass one in', 'layout');
  for (const key of ['topK', 'topKRatio', 'returnLse', 'returnThresholds', 'softmax'] as const) {
    if (options?.[key] !== undefined) throw new OptionError(`${key} does not affect a block layout; leave it out of buildBlockLayout`, key);
  }
  // k stands in for v: only its shape is checked.
  const inputs = classifyInputs(q, k, k);
  const resolved = resolveProblem(inputs, options);
  if (!resolved.sparse) throw new OptionError('options describe dense attention (no window, globalTokens or blocks): there is no layout to build', 'options');
  const { backend, problem } = chooseBackend(resolved, inputs);
  const owned = ownInputs(inputs);
  try {
    if (problem.checkFinite) await checkFiniteInputs(owned, problem.dtype);
    return await backend.buildLayout(problem, owned);
  } finally {
    releaseInputs(owned);
  }
}
