/**
 * Option resolution: turns the user's (q, k, v, options) into one plain `Problem` that every
 * backend consumes (the params struct of FlashAttention), after checking everything. Nothing
 * is computed before this has passed, so a bad call never leaves anything half-done.
 */
import { types } from 'node:util';
import { DisposedError, DtypeError, OptionError, ShapeError } from './errors';
import { checkValues } from './finite';
import { BlockLayout, verifyLayout } from './layout';
import { ownLayout } from './ownership';
import { MaskSpec, resolveWindow } from './mask';
import { ResolvedSoftmax, resolveSoftmax } from './softmax';
import { checkTensorsFinite, Tensor } from './tensor';
import type { AttentionOptions, BackendName, Dtype, MemoryLayout } from './types';
import { checkBoolean, checkInt, checkKeys, checkNumber, checkOneOf, describe } from './validate';

export const MAX_HEAD_DIM = 256;
/** Largest element count of one input: typed arrays and device indexing stay in int32 range. */
export const MAX_ELEMENTS = 2 ** 31 - 1;

export interface Selection {
  mode: 'ratio' | 'topBlocks' | 'progressive';
  value: number;
  minBlocks: number;
  maxBlocks: number;
  estimate: Estimate;
  shareAcrossGroup: boolean;
}

/** Block (or page) estimates: attention offers mean and bound, decode also moment. */
export type Estimate = 'mean' | 'bound' | 'moment';

export type TopK = { kind: 'count'; k: number } | { kind: 'ratio'; ratio: number } | null;

export interface Problem {
  batch: number;
  heads: number;
  kvHeads: number;
  seqQ: number;
  seqK: number;
  headDim: number;
  memoryLayout: MemoryLayout;
  causal: boolean;
  scale: number;
  softmax: ResolvedSoftmax;
  /** Window and sinks (from the options or from a passed layout). */
  mask: MaskSpec;
  blockSize: number;
  /** Queries per query block (selection and layout rows); blockSize unless set. */
  queryBlockSize: number;
  /** Block selection to run, or null. */
  selection: Selection | null;
  /** A layout passed in by the caller, or null. */
  layout: BlockLayout | null;
  /** True when any sparse structure is configured: then allowed keys are window ∪ sinks ∪ selected blocks. */
  sparse: boolean;
  topK: TopK;
  returnLse: boolean;
  returnThresholds: boolean;
  backend: BackendName;
  /** Compute precision; null until a backend is chosen when the caller left it out (chooseBackend resolves it). */
  dtype: Dtype | null;
  checkFinite: boolean;
  /** Keep what `attentionBackward` needs (the layout, thresholds and LSE) on the result. */
  saveForBackward: boolean;
  /** Threads of the cpu backend; null: the machine's. */
  threads: number | null;
}

const OPTION_KEYS = [
  'shape', 'causal', 'scale', 'softmax', 'window', 'globalTokens', 'blockSize', 'queryBlockSize', 'blocks', 'estimate', 'shareAcrossGroup',
  'topK', 'topKRatio', 'layout', 'returnLse', 'returnThresholds', 'backend', 'dtype', 'checkFinite', 'saveForBackward', 'threads',
] as const;
const SHAPE_KEYS = ['batch', 'heads', 'kvHeads', 'seqQ', 'seqK', 'headDim', 'layout'] as const;
const BACKENDS: readonly BackendName[] = ['auto', 'js', 'cpu', 'cuda', 'cuda-emu'];

export type Inputs = { kind: 'host'; q: Float32Array; k: Float32Array; v: Float32Array } | { kind: 'tensor'; q: Tensor; k: Tensor; v: Tensor };

/** Check the three inputs are of one kind (Float32Array or Tensor) and usable. */
export function classifyInputs(q: unknown, k: unknown, v: unknown): Inputs {
  const args = { q, k, v };
  const isTensor = Object.values(args).map((x) => x instanceof Tensor);
  if (isTensor.every(Boolean)) {
    for (const [name, t] of Object.entries(args) as [string, Tensor][]) {
      if (t.disposed) throw new DisposedError(`Tensor ${name}`, name);
      if (t.location === 'cpu' && t.data.length !== t.size) {
        throw new ShapeError(`${name}'s data holds ${t.data.length} floats, not ${t.size}: was its ArrayBuffer transferred?`, name);
      }
    }
    return { kind: 'tensor', q: q as Tensor, k: k as Tensor, v: v as Tensor };
  }
  if (isTensor.some(Boolean)) throw new DtypeError('q, k and v must all be Tensors or all be Float32Arrays', 'q');
  for (const [name, x] of Object.entries(args)) {
    if (!types.isFloat32Array(x)) throw new DtypeError(`${name} must be a Float32Array or a Tensor, got ${describe(x)}`, name);
    if (x.buffer.byteLength === 0 && x.length === 0) throw new ShapeError(`${name} is empty or its ArrayBuffer was detached (transferred)`, name);
  }
  return { kind: 'host', q: q as Float32Array, k: k as Float32Array, v: v as Float32Array };
}

export function resolveProblem(inputs: Inputs, options: AttentionOptions | undefined): Problem {
  if (options === undefined || options === null || typeof options !== 'object') throw new OptionError('options must be an object (with at least shape for Float32Array inputs)', 'options');
  checkKeys('options', options, OPTION_KEYS);
  const shape = resolveShape(inputs, options);
  const { batch, heads, kvHeads, seqQ, seqK, headDim } = shape;

  const causal = checkBoolean('causal', options.causal, false);
  const scale = options.scale === undefined ? 1 / Math.sqrt(headDim) : checkNumber('scale', options.scale, -1e30, 1e30);
  const softmax = resolveSoftmax(options.softmax);
  const topK = resolveTopK(options);
  const backend = checkOneOf('backend', options.backend, BACKENDS, 'auto');
  const dtype: Dtype | null = options.dtype === undefined ? (inputs.kind === 'tensor' ? tensorDtype(inputs.q) : null) : checkOneOf<Dtype>('dtype', options.dtype, ['float32', 'float16', 'bfloat16'], 'float32');
  const base = {
    batch, heads, kvHeads, seqQ, seqK, headDim, memoryLayout: shape.layout, causal, scale, softmax, topK, backend, dtype,
    returnLse: checkBoolean('returnLse', options.returnLse, false),
    returnThresholds: checkBoolean('returnThresholds', options.returnThresholds, false),
    checkFinite: checkBoolean('checkFinite', options.checkFinite, true),
    saveForBackward: checkBoolean('saveForBackward', options.saveForBackward, false),
    threads: options.threads === undefined ? null : checkInt('threads', options.threads, 1, 1024),
  };

  if (options.layout !== undefined) return { ...base, ...fromLayout(options, base) };

  const blockSize = options.blockSize === undefined ? 64 : checkInt('blockSize', options.blockSize, 16, 256);
  if (blockSize % 16 !== 0) throw new OptionError(`blockSize must be a multiple of 16 in 16..256, got ${blockSize}`, 'blockSize');
  const queryBlockSize = options.queryBlockSize === undefined ? blockSize : checkInt('queryBlockSize', options.queryBlockSize, 1, 256);
  const window = resolveWindowOption(options.window, causal);
  const globalTokens = options.globalTokens === undefined ? 0 : checkInt('globalTokens', options.globalTokens, 0, MAX_ELEMENTS);
  const selection = resolveSelection(options, ['mean', 'bound', 'moment']);
  if (selection === null && (options.estimate !== undefined || options.shareAcrossGroup !== undefined)) {
    throw new OptionError(`${options.estimate !== undefined ? 'estimate' : 'shareAcrossGroup'} needs blocks (a block selection) to act on`, options.estimate !== undefined ? 'estimate' : 'shareAcrossGroup');
  }
  const mask: MaskSpec = { seqQ, seqK, causal, windowLeft: window[0], windowRight: window[1], globalTokens };
  const sparse = window[0] >= 0 || globalTokens > 0 || selection !== null;
  return { ...base, mask, blockSize, queryBlockSize, selection, layout: null, sparse };
}

function resolveShape(inputs: Inputs, options: AttentionOptions) {
  const s = options.shape;
  if (s !== undefined) {
    if (typeof s !== 'object' || s === null) throw new OptionError('shape must be an object { batch, heads, seqQ, headDim, ... }', 'shape');
    checkKeys('shape', s, SHAPE_KEYS);
  } else if (inputs.kind === 'host') {
    throw new OptionError('shape is required with Float32Array inputs: { batch, heads, seqQ, headDim, kvHeads?, seqK?, layout? }', 'shape');
  }
  const layout = checkOneOf<MemoryLayout>('shape.layout', s?.layout, ['bhnd', 'bnhd'], 'bhnd');
  const shapeErr = (m: string, a: string) => new ShapeError(m, a);
  let dims: { batch: number; heads: number; kvHeads: number; seqQ: number; seqK: number; headDim: number };
  if (inputs.kind === 'tensor') {
    const [qd, kd, vd] = [inputs.q.dims, inputs.k.dims, inputs.v.dims];
    const nh = (d: readonly number[]) => (layout === 'bhnd' ? [d[1], d[2]] : [d[2], d[1]]);
    const [heads, seqQ] = nh(qd);
    const [kvHeads, seqK] = nh(kd);
    dims = { batch: qd[0], heads, kvHeads, seqQ, seqK, headDim: qd[3] };
    if (kd[0] !== qd[0] || kd[3] !== qd[3]) throw new ShapeError(`k dims [${kd}] do not fit q dims [${qd}] (batch and headDim must match)`, 'k');
    if (vd.some((x, i) => x !== kd[i])) throw new ShapeError(`v dims [${vd}] must equal k dims [${kd}]`, 'v');
    if (s !== undefined) {
      for (const key of ['batch', 'heads', 'kvHeads', 'seqQ', 'seqK', 'headDim'] as const) {
        if (s[key] !== undefined && s[key] !== dims[key]) throw new ShapeError(`shape.${key} is ${s[key]} but the tensors have ${dims[key]}`, `shape.${key}`);
      }
    }
  } else {
    const batch = checkInt('shape.batch', s!.batch, 1, MAX_ELEMENTS, shapeErr);
    const heads = checkInt('shape.heads', s!.heads, 1, MAX_ELEMENTS, shapeErr);
    const kvHeads = s!.kvHeads === undefined ? heads : checkInt('shape.kvHeads', s!.kvHeads, 1, MAX_ELEMENTS, shapeErr);
    const seqQ = checkInt('shape.seqQ', s!.seqQ, 1, MAX_ELEMENTS, shapeErr);
    const seqK = s!.seqK === undefined ? seqQ : checkInt('shape.seqK', s!.seqK, 1, MAX_ELEMENTS, shapeErr);
    const headDim = checkInt('shape.headDim', s!.headDim, 1, MAX_ELEMENTS, shapeErr);
    dims = { batch, heads, kvHeads, seqQ, seqK, headDim };
  }
  if (dims.headDim > MAX_HEAD_DIM) throw new ShapeError(`shape.headDim must be 1..${MAX_HEAD_DIM}, got ${dims.headDim}`, 'shape.headDim');
  if (dims.heads % dims.kvHeads !== 0) throw new ShapeError(`shape.heads (${dims.heads}) must be a multiple of shape.kvHeads (${dims.kvHeads})`, 'shape.kvHeads');
  const qSize = dims.batch * dims.heads * dims.seqQ * dims.headDim;
  const kSize = dims.batch * dims.kvHeads * dims.seqK * dims.headDim;
  if (qSize > MAX_ELEMENTS || kSize > MAX_ELEMENTS) {
    throw new ShapeError(`shape needs ${Math.max(qSize, kSize)} elements per input; the limit is ${MAX_ELEMENTS}`, 'shape');
  }
  if (inputs.kind === 'host') {
    const want = { q: qSize, k: kSize, v: kSize };
    for (const name of ['q', 'k', 'v'] as const) {
      const got = inputs[name].length;
      if (got !== want[name]) {
        const dimsText = name === 'q' ? `[${dims.batch}, ${dims.heads}, ${dims.seqQ}, ${dims.headDim}]` : `[${dims.batch}, ${dims.kvHeads}, ${dims.seqK}, ${dims.headDim}]`;
        throw new ShapeError(`${name} has ${got} floats; shape (${layout}) ${dimsText} needs ${want[name]}`, name);
      }
    }
  }
  return { ...dims, layout };
}

export function resolveWindowOption(window: unknown, causal: boolean): [number, number] {
  if (window === undefined) return [-1, -1];
  const limit = MAX_ELEMENTS;
  if (typeof window === 'number') {
    checkInt('window', window, 1, limit);
    return resolveWindow(window, causal);
  }
  if (!Array.isArray(window) || window.length !== 2) throw new OptionError(`window must be a positive integer or [left, right], got ${describe(window)}`, 'window');
  return resolveWindow([checkInt('window[0]', window[0], 0, limit), checkInt('window[1]', window[1], 0, limit)], causal);
}

export function resolveSelection(options: { blocks?: unknown; estimate?: unknown; shareAcrossGroup?: unknown }, estimates: readonly Estimate[] = ['mean', 'bound'], defaultEstimate: Estimate = 'mean'): Selection | null {
  const b = options.blocks as Record<string, unknown> | undefined;
  if (b === undefined) return null;
  if (typeof b !== 'object' || b === null) throw new OptionError('blocks must be { ratio }, { topBlocks } or { progressive }', 'blocks');
  checkKeys('blocks', b, ['ratio', 'topBlocks', 'progressive', 'minBlocks', 'maxBlocks']);
  const modes = (['ratio', 'topBlocks', 'progressive'] as const).filter((m) => b[m] !== undefined);
  if (modes.length !== 1) throw new OptionError(`blocks needs exactly one of ratio, topBlocks, progressive; got ${modes.length ? modes.join(' and ') : 'none'}`, 'blocks');
  const mode = modes[0];
  const value = mode === 'topBlocks' ? checkInt('blocks.topBlocks', b.topBlocks, 0, MAX_ELEMENTS) : checkNumber(`blocks.${mode}`, b[mode], 0, 1);
  const minBlocks = b.minBlocks === undefined ? 0 : checkInt('blocks.minBlocks', b.minBlocks, 0, MAX_ELEMENTS);
  const maxBlocks = b.maxBlocks === undefined ? MAX_ELEMENTS : checkInt('blocks.maxBlocks', b.maxBlocks, 0, MAX_ELEMENTS);
  if (minBlocks > maxBlocks) throw new OptionError(`blocks.minBlocks (${minBlocks}) exceeds blocks.maxBlocks (${maxBlocks})`, 'blocks.minBlocks');
  return {
    mode, value, minBlocks, maxBlocks,
    estimate: checkOneOf('estimate', options.estimate, estimates, defaultEstimate),
    shareAcrossGroup: checkBoolean('shareAcrossGroup', options.shareAcrossGroup, false),
  };
}

export function resolveTopK(options: { topK?: unknown; topKRatio?: unknown }): TopK {
  if (options.topK !== undefined && options.topKRatio !== undefined) throw new OptionError('give topK or topKRatio, not both', 'topK');
  if (options.topK !== undefined) return { kind: 'count', k: checkInt('topK', options.topK, 1, MAX_ELEMENTS) };
  if (options.topKRatio !== undefined) return { kind: 'ratio', ratio: checkNumber('topKRatio', options.topKRatio, 0, 1, { minOpen: true }) };
  return null;
}

function fromLayout(options: AttentionOptions, base: { batch: number; heads: number; seqQ: number; seqK: number; causal: boolean }) {
  const layout = options.layout;
  if (!(layout instanceof BlockLayout)) throw new OptionError(`layout must be a BlockLayout, got ${describe(layout)}`, 'layout');
  for (const key of ['window', 'globalTokens', 'blockSize', 'queryBlockSize', 'blocks', 'estimate', 'shareAcrossGroup'] as const) {
    if (options[key] !== undefined) throw new OptionError(`${key} cannot be combined with layout: the layout already fixes it`, key);
  }
  for (const key of ['batch', 'heads', 'seqQ', 'seqK'] as const) {
    if (layout[key] !== base[key]) throw new ShapeError(`layout.${key} is ${layout[key]} but the inputs have ${base[key]}`, `layout.${key}`);
  }
  if (options.causal !== undefined && options.causal !== layout.causal) {
    throw new OptionError(`causal is ${options.causal} but the layout was built with causal ${layout.causal}`, 'causal');
  }
  // Verify a copy and compute from it: the caller's arrays may change once this returns.
  const own = ownLayout(layout);
  verifyLayout(own);
  return { causal: own.causal, mask: own.maskSpec, blockSize: own.blockSize, queryBlockSize: own.queryBlockSize, selection: null, layout: own, sparse: true };
}

/** 16-bit tensors ask for their own precision; float32 ones leave it to the backend. */
function tensorDtype(q: Tensor): Dtype | null {
  return q.type === 'float32' ? null : q.type;
}

/**
 * `checkFinite`: reject NaN and infinities in every input, and values the compute type cannot
 * hold where the chosen backend converts the inputs (float16: |x| >= 65520 becomes infinite).
 * Host data and cpu Tensors are checked here; device tensors on their device. A NaN anywhere
 * would silently poison every row that sees it.
 */
export async function checkFiniteInputs(inputs: Inputs, dtype: Dtype | null): Promise<void> {
  const type = dtype ?? 'float32';
  if (inputs.kind === 'host') {
    for (const name of ['q', 'k', 'v'] as const) checkValues(name, inputs[name], type);
    return;
  }
  const names = ['q', 'k', 'v'] as const;
  const unique = names.filter((n, i) => names.findIndex((m) => inputs[m] === inputs[n]) === i);
  // Checked at once (one wait on the device), reported in argument order (q, then k, then v).
  await checkTensorsFinite(unique.map((n) => [n, inputs[n]] as const), type);
}
