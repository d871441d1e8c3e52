/**
 * Bad input, on every backend: every bad call to `attention` / `buildBlockLayout` is a rejected
 * Promise (never a synchronous throw) carrying a PsaError subclass, a stable `code` and an
 * `argument` naming the culprit; what a backend's profile cannot run is refused the same way;
 * and nothing is half-done: inputs, options and layouts are untouched by any call, and a
 * failed call leaves no output and no state behind (docs/contract.md#errors-and-input-ownership).
 */
import {
  attention, buildBlockLayout, info, BackendUnavailableError, BlockLayout, DtypeError, OptionError, PsaError, ShapeError, Tensor, ValueError,
} from '../lib';
import type { AttentionOptions, AttentionShape, PsaErrorCode } from '../lib';
import { BackendUnderTest, ComputeType, forEachBackend, testIf, unavailableReason } from './backends';
import { ALL_BLOCK_SIZES, BACKENDS } from './profiles';
import { randomArray } from './data';

type ErrorClass = new (...args: never[]) => PsaError;

/** Calls `call`, requires a Promise back (no synchronous throw) that rejects with the given class, code and argument. */
async function expectRejection(call: () => unknown, cls: ErrorClass, code: PsaErrorCode, argument?: string | RegExp | readonly string[]): Promise<PsaError> {
  let p: unknown;
  expect(() => {
    p = call();
  }).not.toThrow();
  expect(p).toBeInstanceOf(Promise);
  let err: unknown = undefined;
  let resolved = false;
  try {
    await p;
    resolved = true;
  } catch (e) {
    err = e;
  }
  expect(resolved).toBe(false);
  expect(err).toBeInstanceOf(PsaError);
  expect(err).toBeInstanceOf(cls);
  const e = err as PsaError;
  expect(e.code).toBe(code);
  expect(typeof e.message).toBe('string');
  expect(e.message.length).toBeGreaterThan(0);
  if (typeof argument === 'string') expect(e.argument).toBe(argument);
  else if (argument instanceof RegExp) expect(e.argument).toMatch(argument);
  else if (Array.isArray(argument)) expect(argument).toContain(e.argument);
  return e;
}

const SHAPE: AttentionShape = { batch: 1, heads: 2, kvHeads: 1, seqQ: 5, seqK: 7, headDim: 4 };
const qLen = (s: AttentionShape) => s.batch * s.heads * s.seqQ * s.headDim;
const kLen = (s: AttentionShape) => s.batch * (s.kvHeads ?? s.heads) * (s.seqK ?? s.seqQ) * s.headDim;

function inputs(shape: AttentionShape = SHAPE, seed = 1) {
  return { q: randomArray(qLen(shape), seed), k: randomArray(kLen(shape), seed + 1), v: randomArray(kLen(shape), seed + 2) };
}

function detach(a: Float32Array): void {
  structuredClone(a, { transfer: [a.buffer as ArrayBuffer] });
  expect(a.length).toBe(0);
  expect(a.buffer.byteLength).toBe(0);
}

interface Case {
  name: string;
  make: () => { q: unknown; k: unknown; v: unknown; options: unknown };
  cls: ErrorClass;
  code: PsaErrorCode;
  argument: string | RegExp | readonly string[];
}

const base = (options: Record<string, unknown> = {}, shape: Partial<AttentionShape> | null = {}) => () => {
  const s = { ...SHAPE, ...shape } as AttentionShape;
  const { q, k, v } = inputs(SHAPE);
  return { q, k, v, options: { shape: shape === null ? undefined : s, ...options } };
};
const withShape = (shape: Record<string, unknown>, options: Record<string, unknown> = {}) => () => {
  const { q, k, v } = inputs(SHAPE);
  return { q, k, v, options: { shape, ...options } };
};

const cases: Case[] = [];
const add = (name: string, make: Case['make'], cls: ErrorClass, code: PsaErrorCode, argument: Case['argument']) => cases.push({ name, make, cls, code, argument });

// --- lengths of q, k, v
add('q one float short', () => ({ ...inputs(), q: randomArray(qLen(SHAPE) - 1, 5), options: { shape: SHAPE } }), ShapeError, 'ERR_SHAPE', 'q');
add('q one float long', () => ({ ...inputs(), q: randomArray(qLen(SHAPE) + 1, 5), options: { shape: SHAPE } }), ShapeError, 'ERR_SHAPE', 'q');
add('k sized for kvHeads = heads', () => ({ ...inputs(), k: randomArray(qLen(SHAPE) / 5 * 7, 5), options: { shape: SHAPE } }), ShapeError, 'ERR_SHAPE', 'k');
add('k four floats long', () => ({ ...inputs(), k: randomArray(kLen(SHAPE) + 4, 5), options: { shape: SHAPE } }), ShapeError, 'ERR_SHAPE', 'k');
add('v one float short', () => ({ ...inputs(), v: randomArray(kLen(SHAPE) - 1, 5), options: { shape: SHAPE } }), ShapeError, 'ERR_SHAPE', 'v');
add('v sized like q', () => ({ ...inputs(), v: randomArray(qLen(SHAPE), 5), options: { shape: SHAPE } }), ShapeError, 'ERR_SHAPE', 'v');
add('empty q', () => ({ ...inputs(), q: new Float32Array(0), options: { shape: SHAPE } }), ShapeError, 'ERR_SHAPE', 'q');
add('empty v', () => ({ ...inputs(), v: new Float32Array(0), options: { shape: SHAPE } }), ShapeError, 'ERR_SHAPE', 'v');
add('bnhd shape with bhnd-sized k (seqK swapped)', () => ({ ...inputs(), options: { shape: { ...SHAPE, seqK: 6, layout: 'bnhd' } } }), ShapeError, 'ERR_SHAPE', 'k');

// --- shape fields
const badNumbers: [string, unknown][] = [['0', 0], ['-1', -1], ['1.5', 1.5], ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity], ["'2'", '2'], ['null', null], ['true', true], ['[2]', [2]], ['2^31', 2 ** 31]];
for (const field of ['batch', 'heads', 'kvHeads', 'seqQ', 'seqK', 'headDim'] as const) {
  for (const [label, value] of badNumbers) {
    add(`shape.${field} = ${label}`, base({}, { [field]: value } as Partial<AttentionShape>), ShapeError, 'ERR_SHAPE', `shape.${field}`);
  }
}
for (const field of ['batch', 'heads', 'seqQ', 'headDim'] as const) {
  add(`shape.${field} missing`, () => {
    const s: Record<string, unknown> = { ...SHAPE };
    delete s[field];
    return { ...inputs(), options: { shape: s } };
  }, ShapeError, 'ERR_SHAPE', `shape.${field}`);
}
add('shape missing', base({}, null), OptionError, 'ERR_OPTION', 'shape');
add('shape null', withShape(null as never), OptionError, 'ERR_OPTION', 'shape');
add('shape a string', withShape('1x2x5x4' as never), OptionError, 'ERR_OPTION', 'shape');
add('shape unknown key', withShape({ ...SHAPE, heads_: 2 }), OptionError, 'ERR_OPTION', 'shape.heads_');
add('shape.layout unknown', withShape({ ...SHAPE, layout: 'nhd' }), OptionError, 'ERR_OPTION', 'shape.layout');
add('headDim 257', () => {
  const s = { batch: 1, heads: 1, seqQ: 1, headDim: 257 };
  return { ...inputs(s), options: { shape: s } };
}, ShapeError, 'ERR_SHAPE', 'shape.headDim');
add('headDim 512', () => {
  const s = { batch: 1, heads: 1, seqQ: 2, headDim: 512 };
  return { ...inputs(s), options: { shape: s } };
}, ShapeError, 'ERR_SHAPE', 'shape.headDim');
add('heads 3, kvHeads 2', () => {
  const s = { batch: 1, heads: 3, kvHeads: 2, seqQ: 2, headDim: 4 };
  return { ...inputs(s), options: { shape: s } };
}, ShapeError, 'ERR_SHAPE', 'shape.kvHeads');
add('kvHeads above heads', () => {
  const s = { batch: 1, heads: 2, kvHeads: 4, seqQ: 2, headDim: 4 };
  return { ...inputs(s), options: { shape: s } };
}, ShapeError, 'ERR_SHAPE', 'shape.kvHeads');

// --- absurd sizes (tiny arrays: must be rejected on the shape alone, before anything is allocated)
add('batch 1e6 x seqQ 1e6', withShape({ batch: 1e6, heads: 1, seqQ: 1e6, headDim: 64 }), ShapeError, 'ERR_SHAPE', 'shape');
add('q of exactly 2^31 elements', withShape({ batch: 2, heads: 1, seqQ: 2 ** 30, headDim: 1 }), ShapeError, 'ERR_SHAPE', 'shape');
add('k alone too large (seqK 2^30, headDim 4)', withShape({ batch: 1, heads: 1, seqQ: 1, seqK: 2 ** 30, headDim: 4 }), ShapeError, 'ERR_SHAPE', 'shape');
add('every field at 2^31-1', withShape({ batch: 2 ** 31 - 1, heads: 2 ** 31 - 1, seqQ: 2 ** 31 - 1, headDim: 256 }), ShapeError, 'ERR_SHAPE', 'shape');

// --- dtypes
add('q Float64Array', () => ({ ...inputs(), q: new Float64Array(qLen(SHAPE)), options: { shape: SHAPE } }), DtypeError, 'ERR_DTYPE', 'q');
add('k Float64Array', () => ({ ...inputs(), k: new Float64Array(kLen(SHAPE)), options: { shape: SHAPE } }), DtypeError, 'ERR_DTYPE', 'k');
add('k plain array', () => ({ ...inputs(), k: Array.from(randomArray(kLen(SHAPE), 3)), options: { shape: SHAPE } }), DtypeError, 'ERR_DTYPE', 'k');
add('q plain array', () => ({ ...inputs(), q: new Array(qLen(SHAPE)).fill(0), options: { shape: SHAPE } }), DtypeError, 'ERR_DTYPE', 'q');
add('v Uint16Array', () => ({ ...inputs(), v: new Uint16Array(kLen(SHAPE)), options: { shape: SHAPE } }), DtypeError, 'ERR_DTYPE', 'v');
add('v Int32Array', () => ({ ...inputs(), v: new Int32Array(kLen(SHAPE)), options: { shape: SHAPE } }), DtypeError, 'ERR_DTYPE', 'v');
add('q a DataView', () => ({ ...inputs(), q: new DataView(new ArrayBuffer(4 * qLen(SHAPE))), options: { shape: SHAPE } }), DtypeError, 'ERR_DTYPE', 'q');
add('q an ArrayBuffer', () => ({ ...inputs(), q: new ArrayBuffer(4 * qLen(SHAPE)), options: { shape: SHAPE } }), DtypeError, 'ERR_DTYPE', 'q');
add('q null', () => ({ ...inputs(), q: null, options: { shape: SHAPE } }), DtypeError, 'ERR_DTYPE', 'q');
add('v undefined', () => ({ ...inputs(), v: undefined, options: { shape: SHAPE } }), DtypeError, 'ERR_DTYPE', 'v');
add('q Tensor, k and v Float32Array', () => {
  const i = inputs();
  return { ...i, q: Tensor.fromFloat32(i.q, [1, 2, 5, 4]), options: { shape: SHAPE } };
}, DtypeError, 'ERR_DTYPE', ['q', 'k', 'v']);
add('q Float32Array, k and v Tensors', () => {
  const i = inputs();
  return { q: i.q, k: Tensor.fromFloat32(i.k, [1, 1, 7, 4]), v: Tensor.fromFloat32(i.v, [1, 1, 7, 4]), options: { shape: SHAPE } };
}, DtypeError, 'ERR_DTYPE', ['q', 'k', 'v']);
add('v Tensor only', () => {
  const i = inputs();
  return { ...i, v: Tensor.fromFloat32(i.v, [1, 1, 7, 4]), options: { shape: SHAPE } };
}, DtypeError, 'ERR_DTYPE', ['q', 'k', 'v']);

// --- detached buffers
for (const name of ['q', 'k', 'v'] as const) {
  add(`${name} detached (transferred)`, () => {
    const i = inputs();
    detach(i[name]);
    return { ...i, options: { shape: SHAPE } };
  }, ShapeError, 'ERR_SHAPE', name);
}
add('q detached, checkFinite false', () => {
  const i = inputs();
  detach(i.q);
  return { ...i, options: { shape: SHAPE, checkFinite: false } };
}, ShapeError, 'ERR_SHAPE', 'q');

// --- non-finite data
add('NaN in q', () => {
  const i = inputs();
  i.q[3] = NaN;
  return { ...i, options: { shape: SHAPE } };
}, ValueError, 'ERR_VALUE', 'q');
add('Infinity in k', () => {
  const i = inputs();
  i.k[kLen(SHAPE) - 1] = Infinity;
  return { ...i, options: { shape: SHAPE } };
}, ValueError, 'ERR_VALUE', 'k');
add('-Infinity in v (last element)', () => {
  const i = inputs();
  i.v[kLen(SHAPE) - 1] = -Infinity;
  return { ...i, options: { shape: SHAPE, window: 2 } };
}, ValueError, 'ERR_VALUE', 'v');
add('NaN in v, sparse with top-k', () => {
  const i = inputs();
  i.v[0] = NaN;
  return { ...i, options: { shape: SHAPE, causal: true, blocks: { ratio: 0.5 }, topK: 2 } };
}, ValueError, 'ERR_VALUE', 'v');

// --- options: numbers out of range
const opt = (o: Record<string, unknown>) => base(o);
for (const [label, w] of [['NaN', NaN], ['0', 0], ['-1', -1], ['1.5', 1.5], ['Infinity', Infinity], ["'4'", '4'], ['null', null], ['[1]', [1]], ['[1,2,3]', [1, 2, 3]], ['{}', {}]] as [string, unknown][]) {
  add(`window ${label}`, opt({ window: w }), OptionError, 'ERR_OPTION', 'window');
}
add('window [-1, 0]', opt({ window: [-1, 0] }), OptionError, 'ERR_OPTION', 'window[0]');
add('window [NaN, 0]', opt({ window: [NaN, 0] }), OptionError, 'ERR_OPTION', 'window[0]');
add('window [0, 1.5]', opt({ window: [0, 1.5] }), OptionError, 'ERR_OPTION', 'window[1]');
add('window [0, Infinity]', opt({ window: [0, Infinity] }), OptionError, 'ERR_OPTION', 'window[1]');
for (const [label, g] of [['NaN', NaN], ['-1', -1], ['0.5', 0.5], ['Infinity', Infinity], ["'4'", '4']] as [string, unknown][]) {
  add(`globalTokens ${label}`, opt({ globalTokens: g }), OptionError, 'ERR_OPTION', 'globalTokens');
}
for (const [label, b] of [['17', 17], ['24', 24], ['8', 8], ['0', 0], ['-16', -16], ['272', 272], ['512', 512], ['32.5', 32.5], ['NaN', NaN], ["'64'", '64']] as [string, unknown][]) {
  add(`blockSize ${label}`, opt({ window: 2, blockSize: b }), OptionError, 'ERR_OPTION', 'blockSize');
}
add('blockSize 17 alone (dense)', opt({ blockSize: 17 }), OptionError, 'ERR_OPTION', 'blockSize');
for (const [label, r] of [['1.5', 1.5], ['-0.1', -0.1], ['NaN', NaN], ['Infinity', Infinity], ["'0.5'", '0.5']] as [string, unknown][]) {
  add(`blocks.ratio ${label}`, opt({ blocks: { ratio: r } }), OptionError, 'ERR_OPTION', 'blocks.ratio');
  add(`blocks.progressive ${label}`, opt({ blocks: { progressive: r } }), OptionError, 'ERR_OPTION', 'blocks.progressive');
}
for (const [label, t] of [['-1', -1], ['1.5', 1.5], ['NaN', NaN], ['Infinity', Infinity]] as [string, unknown][]) {
  add(`blocks.topBlocks ${label}`, opt({ blocks: { topBlocks: t } }), OptionError, 'ERR_OPTION', 'blocks.topBlocks');
}
add('blocks with ratio and topBlocks', opt({ blocks: { ratio: 0.5, topBlocks: 2 } }), OptionError, 'ERR_OPTION', 'blocks');
add('blocks with ratio and progressive', opt({ blocks: { ratio: 0.5, progressive: 0.9 } }), OptionError, 'ERR_OPTION', 'blocks');
add('blocks with all three modes', opt({ blocks: { ratio: 0.5, topBlocks: 1, progressive: 0.9 } }), OptionError, 'ERR_OPTION', 'blocks');
add('blocks with no mode', opt({ blocks: { minBlocks: 1 } }), OptionError, 'ERR_OPTION', 'blocks');
add('blocks {}', opt({ blocks: {} }), OptionError, 'ERR_OPTION', 'blocks');
add('blocks null', opt({ blocks: null }), OptionError, 'ERR_OPTION', 'blocks');
add('blocks a number', opt({ blocks: 0.5 }), OptionError, 'ERR_OPTION', 'blocks');
add('blocks unknown key', opt({ blocks: { ratio: 0.5, ratios: 0.5 } }), OptionError, 'ERR_OPTION', 'blocks.ratios');
add('minBlocks > maxBlocks', opt({ blocks: { ratio: 0.5, minBlocks: 3, maxBlocks: 2 } }), OptionError, 'ERR_OPTION', /^blocks\.(minBlocks|maxBlocks)$/);
add('minBlocks > maxBlocks (progressive)', opt({ blocks: { progressive: 0.9, minBlocks: 1, maxBlocks: 0 } }), OptionError, 'ERR_OPTION', /^blocks\.(minBlocks|maxBlocks)$/);
add('minBlocks -1', opt({ blocks: { ratio: 0.5, minBlocks: -1 } }), OptionError, 'ERR_OPTION', 'blocks.minBlocks');
add('minBlocks NaN', opt({ blocks: { topBlocks: 1, minBlocks: NaN } }), OptionError, 'ERR_OPTION', 'blocks.minBlocks');
add('maxBlocks 1.5', opt({ blocks: { ratio: 0.5, maxBlocks: 1.5 } }), OptionError, 'ERR_OPTION', 'blocks.maxBlocks');
for (const [label, t] of [['0', 0], ['-1', -1], ['1.5', 1.5], ['NaN', NaN], ['Infinity', Infinity], ["'2'", '2']] as [string, unknown][]) {
  add(`topK ${label}`, opt({ topK: t }), OptionError, 'ERR_OPTION', 'topK');
}
add('topK with topKRatio', opt({ topK: 2, topKRatio: 0.5 }), OptionError, 'ERR_OPTION', ['topK', 'topKRatio']);
for (const [label, t] of [['0', 0], ['-0.5', -0.5], ['1.5', 1.5], ['NaN', NaN], ['Infinity', Infinity]] as [string, unknown][]) {
  add(`topKRatio ${label}`, opt({ topKRatio: t }), OptionError, 'ERR_OPTION', 'topKRatio');
}
for (const [label, s] of [['NaN', NaN], ['Infinity', Infinity], ["'1'", '1']] as [string, unknown][]) {
  add(`scale ${label}`, opt({ scale: s }), OptionError, 'ERR_OPTION', 'scale');
}
add("softmax 'fast'", opt({ softmax: 'fast' }), OptionError, 'ERR_OPTION', 'softmax');
add('softmax 3', opt({ softmax: 3 }), OptionError, 'ERR_OPTION', 'softmax');
add('softmax degree 7', opt({ softmax: { degree: 7 } }), OptionError, 'ERR_OPTION', 'softmax.degree');
add('softmax degree 1 (no table)', opt({ softmax: { degree: 1 } }), OptionError, 'ERR_OPTION', 'softmax.degree');
add('softmax degree 2.5', opt({ softmax: { degree: 2.5 } }), OptionError, 'ERR_OPTION', 'softmax.degree');
add('softmax coefficients: one', opt({ softmax: { coefficients: [1] } }), OptionError, 'ERR_OPTION', 'softmax.coefficients');
add('softmax coefficients: none', opt({ softmax: { coefficients: [] } }), OptionError, 'ERR_OPTION', 'softmax.coefficients');
add('softmax coefficients: ten (degree 9)', opt({ softmax: { coefficients: new Array(10).fill(0.1) } }), OptionError, 'ERR_OPTION', 'softmax.coefficients');
add('softmax coefficients: NaN', opt({ softmax: { coefficients: [1, NaN] } }), OptionError, 'ERR_OPTION', 'softmax.coefficients');
add('softmax coefficients: a string', opt({ softmax: { coefficients: '1,0.69' } }), OptionError, 'ERR_OPTION', 'softmax.coefficients');
add('softmax degree 3 with 3 coefficients', opt({ softmax: { degree: 3, coefficients: [1, 0.7, 0.3] } }), OptionError, 'ERR_OPTION', 'softmax.degree');
add('softmax unknown key', opt({ softmax: { degre: 3 } }), OptionError, 'ERR_OPTION', /^softmax/);
add('unknown option key', opt({ windw: 4 }), OptionError, 'ERR_OPTION', 'options.windw');
add('unknown option key (top_k)', opt({ top_k: 4 }), OptionError, 'ERR_OPTION', 'options.top_k');
add('unknown backend', opt({ backend: 'gpu' }), OptionError, 'ERR_OPTION', 'backend');
add("backend 'JS' (case)", opt({ backend: 'JS' }), OptionError, 'ERR_OPTION', 'backend');
add('unknown dtype', opt({ dtype: 'float64' }), OptionError, 'ERR_OPTION', 'dtype');
add('causal a string', opt({ causal: 'yes' }), OptionError, 'ERR_OPTION', 'causal');
add('returnLse 1', opt({ returnLse: 1 }), OptionError, 'ERR_OPTION', 'returnLse');
add('returnThresholds a string', opt({ returnThresholds: 'true' }), OptionError, 'ERR_OPTION', 'returnThresholds');
add('checkFinite a string', opt({ checkFinite: 'no' }), OptionError, 'ERR_OPTION', 'checkFinite');
add("estimate 'max'", opt({ blocks: { ratio: 0.5 }, estimate: 'max' }), OptionError, 'ERR_OPTION', 'estimate');
add('shareAcrossGroup 1', opt({ blocks: { ratio: 0.5 }, shareAcrossGroup: 1 }), OptionError, 'ERR_OPTION', 'shareAcrossGroup');
add('estimate without blocks', opt({ estimate: 'mean' }), OptionError, 'ERR_OPTION', 'estimate');
add('estimate without blocks (with window)', opt({ window: 4, estimate: 'bound' }), OptionError, 'ERR_OPTION', 'estimate');
add('shareAcrossGroup without blocks', opt({ shareAcrossGroup: true }), OptionError, 'ERR_OPTION', 'shareAcrossGroup');
add('options null', () => ({ ...inputs(), options: null }), OptionError, 'ERR_OPTION', 'options');
add('options a string', () => ({ ...inputs(), options: 'causal' }), OptionError, 'ERR_OPTION', 'options');
add('options missing (Float32Array inputs)', () => ({ ...inputs(), options: undefined }), OptionError, 'ERR_OPTION', ['options', 'shape']);

/** The case's options on `be` (a case naming its own backend keeps it; non-objects stay as they are). */
const on = (be: BackendUnderTest, options: unknown): unknown => (options && typeof options === 'object' ? { backend: be.name, ...options } : options);

/** The backends this machine lacks, by info(). */
const absent = BACKENDS.filter((b) => unavailableReason(b) !== null);

forEachBackend('errors', (be) => {
  const bs = be.profile.blockSizes[0];

  describe('attention rejects bad input with a coded PsaError', () => {
    test.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      const made = c.make();
      const { q, k, v } = made;
      const options = on(be, made.options);
      const copies = [q, k, v].map((x) => (x instanceof Float32Array && x.buffer.byteLength > 0 ? x.slice() : null));
      const optionsText = JSON.stringify(options);
      await expectRejection(() => attention(q as Float32Array, k as Float32Array, v as Float32Array, options as AttentionOptions), c.cls, c.code, c.argument);
      // Nothing half-done: the inputs and the options are as they were.
      [q, k, v].forEach((x, i) => {
        if (copies[i]) expect(x).toEqual(copies[i]);
      });
      expect(JSON.stringify(options)).toBe(optionsText);
    });
  });

  describe('buildBlockLayout rejects the same bad input', () => {
    // buildBlockLayout checks q and k (v is not an argument) and refuses options that do not shape a layout.
    const relevant = cases.filter((c) => !/^(v |empty v|NaN in v|-Infinity in v|v detached|v Tensor|q Tensor|q Float32Array, k and v|v sized|v one|v Uint16|v Int32|v undefined|topK|softmax|returnLse|returnThresholds|scale|options missing)/.test(c.name));
    test.each(relevant.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      const { q, k, options } = c.make();
      const o = on(be, options && typeof options === 'object' ? { window: 2, ...(options as object) } : options) as AttentionOptions;
      await expectRejection(() => buildBlockLayout(q as Float32Array, k as Float32Array, o), c.cls, c.code, c.argument);
    });

    test.each([
      ['topK', { topK: 2 }],
      ['topKRatio', { topKRatio: 0.5 }],
      ['returnLse', { returnLse: true }],
      ['returnThresholds', { returnThresholds: true }],
      ['softmax', { softmax: 'poly' }],
    ] as const)('%s is refused (it does not shape a layout)', async (key, extra) => {
      const { q, k } = inputs();
      await expectRejection(() => buildBlockLayout(q, k, { shape: SHAPE, window: 2, backend: be.name, ...extra } as AttentionOptions), OptionError, 'ERR_OPTION', key);
    });

    test('dense options (nothing sparse) are ERR_OPTION', async () => {
      const { q, k } = inputs();
      await expectRejection(() => buildBlockLayout(q, k, { shape: SHAPE, backend: be.name }), OptionError, 'ERR_OPTION', 'options');
      await expectRejection(() => buildBlockLayout(q, k, { shape: SHAPE, globalTokens: 0, causal: true, backend: be.name }), OptionError, 'ERR_OPTION', 'options');
    });

    test('a layout passed in is ERR_OPTION', async () => {
      const { q, k } = inputs();
      const layout = await buildBlockLayout(q, k, { shape: SHAPE, window: 2, blockSize: bs, backend: be.name });
      await expectRejection(() => buildBlockLayout(q, k, { shape: SHAPE, layout, backend: be.name }), OptionError, 'ERR_OPTION', 'layout');
    });
  });

  describe('the backend accepts what the table above is near to', () => {
    // Guards against the table passing for the wrong reason: the unmodified base call succeeds.
    test('base call resolves', async () => {
      const { q, k, v } = inputs();
      const r = await attention(q, k, v, { shape: SHAPE, backend: be.name });
      expect(r.output).toHaveLength(qLen(SHAPE));
      expect(r.backend).toBe(be.name);
    });

    test('non-finite data is accepted with checkFinite: false', async () => {
      const { q, k, v } = inputs();
      q[0] = NaN;
      k[1] = Infinity;
      v[2] = -Infinity;
      const r = await attention(q, k, v, { shape: SHAPE, checkFinite: false, backend: be.name });
      expect(r.output).toHaveLength(qLen(SHAPE));
      const layout = await buildBlockLayout(q, k, { shape: SHAPE, window: 2, checkFinite: false, backend: be.name });
      expect(layout).toBeInstanceOf(BlockLayout);
    });

    const [small, large] = [be.profile.blockSizes[0], be.profile.blockSizes[be.profile.blockSizes.length - 1]];
    test(`boundary values are accepted: headDim 256, blockSize ${small} and ${large}, topKRatio 1, ratio 0 and 1, topBlocks 0, window [0, 0], 9 coefficients`, async () => {
      const s = { batch: 1, heads: 1, seqQ: 2, headDim: 256 };
      const i = inputs(s);
      await expect(attention(i.q, i.k, i.v, { shape: s, backend: be.name })).resolves.toBeDefined();
      const { q, k, v } = inputs();
      for (const extra of [
        { blockSize: small, window: 1 }, { blockSize: large, window: 1 }, { topKRatio: 1 }, { blocks: { ratio: 0 } }, { blocks: { ratio: 1 } },
        { blocks: { topBlocks: 0 } }, { blocks: { progressive: 1, minBlocks: 2, maxBlocks: 2 } }, { window: [0, 0] as [number, number] },
        { softmax: { coefficients: [1, 0.6931472, 0.2402265, 0.05550411, 0.009618129, 0.001333356, 0.0001540353, 0.00001525273, 0.000001321549] } }, { softmax: { degree: 5 } },
        { scale: 0 }, { scale: -1 },
      ] as AttentionOptions[]) {
        await expect(attention(q, k, v, { shape: SHAPE, backend: be.name, ...extra })).resolves.toBeDefined();
      }
    });
  });

  describe("what the backend's profile cannot run is refused before any work", () => {
    const { q, k, v } = inputs();
    const others = (['float32', 'float16', 'bfloat16'] as ComputeType[]).filter((t) => be.cannot({ dtype: t }) !== null);
    for (const dtype of others) {
      test(`dtype ${dtype}: ERR_DTYPE naming dtype`, async () => {
        await expectRejection(() => attention(q, k, v, { shape: SHAPE, backend: be.name, dtype }), DtypeError, 'ERR_DTYPE', 'dtype');
        await expectRejection(() => buildBlockLayout(q, k, { shape: SHAPE, window: 2, backend: be.name, dtype }), DtypeError, 'ERR_DTYPE', 'dtype');
      });
    }
    const unrun = ALL_BLOCK_SIZES.find((b) => be.cannot({ blockSize: b }) !== null);
    testIf(unrun === undefined ? 'the profile runs every block size' : null, `a valid blockSize the backend does not run${unrun === undefined ? '' : ` (${unrun})`}: ERR_OPTION naming backend`, async () => {
      await expectRejection(() => attention(q, k, v, { shape: SHAPE, window: 4, blockSize: unrun, backend: be.name }), OptionError, 'ERR_OPTION', 'backend');
      await expectRejection(() => buildBlockLayout(q, k, { shape: SHAPE, window: 4, blockSize: unrun, backend: be.name }), OptionError, 'ERR_OPTION', 'backend');
    });
    const limit = be.profile.selectionKeyBlocks;
    testIf(limit === undefined ? 'the profile has no key-block limit for block selection' : null, `more key blocks per row than block selection handles${limit === undefined ? '' : ` (${limit})`}: ERR_OPTION naming backend`, async () => {
      const bs = be.profile.blockSizes[0];
      const big = { batch: 1, heads: 1, seqQ: 1, seqK: bs * (limit! + 1), headDim: 1 };
      const x = new Float32Array(big.seqK);
      await expectRejection(() => attention(new Float32Array(1), x, x, { shape: big, blockSize: bs, blocks: { ratio: 0.1 }, backend: be.name }), OptionError, 'ERR_OPTION', 'backend');
    });
  });

  describe('absurd sizes fail fast, without allocating', () => {
    test('batch 1e6 x seq 1e6 is rejected in milliseconds and allocates nothing large', async () => {
      const { q, k, v } = inputs();
      const before = process.memoryUsage().arrayBuffers;
      const t0 = performance.now();
      const shapes = [
        { batch: 1e6, heads: 1, seqQ: 1e6, headDim: 64 },
        { batch: 1e6, heads: 16, seqQ: 1e6, seqK: 1e6, headDim: 128, kvHeads: 1 },
        { batch: 1, heads: 1, seqQ: 1, seqK: 2 ** 31 - 1, headDim: 2 },
      ];
      for (const shape of shapes) {
        await expectRejection(() => attention(q, k, v, { shape, backend: be.name }), ShapeError, 'ERR_SHAPE', 'shape');
        await expectRejection(() => attention(q, k, v, { shape, window: 4, blocks: { ratio: 0.5 }, causal: true, backend: be.name }), ShapeError, 'ERR_SHAPE', 'shape');
        await expectRejection(() => buildBlockLayout(q, k, { shape, window: 4, backend: be.name }), ShapeError, 'ERR_SHAPE', 'shape');
      }
      expect(performance.now() - t0).toBeLessThan(500);
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 2 ** 20);
    });

    test('a layout or window far larger than the problem is fine (clipped), not an allocation', async () => {
      const { q, k, v } = inputs();
      const r = await attention(q, k, v, { shape: SHAPE, window: 2 ** 31 - 1, globalTokens: 2 ** 31 - 1, backend: be.name });
      expect(r.output).toHaveLength(qLen(SHAPE));
    });
  });

  describe('inconsistent options around a passed layout', () => {
    const shape = { batch: 1, heads: 2, kvHeads: 1, seqQ: 40, seqK: 40, headDim: 4 };
    let layout: BlockLayout;
    let causalLayout: BlockLayout;
    beforeAll(async () => {
      const { q, k } = inputs(shape);
      layout = await buildBlockLayout(q, k, { shape, window: 4, blockSize: bs, backend: be.name });
      causalLayout = await buildBlockLayout(q, k, { shape, window: 4, blockSize: bs, causal: true, blocks: { ratio: 0.5 }, backend: be.name });
    });

    test.each([
      ['blocks', { blocks: { ratio: 0.5 } }],
      ['window', { window: 4 }],
      ['globalTokens', { globalTokens: 0 }],
      ['globalTokens', { globalTokens: 2 }],
      ['blockSize', { blockSize: bs }],
      ['estimate', { estimate: 'mean' }],
      ['shareAcrossGroup', { shareAcrossGroup: false }],
    ] as const)('layout with %s is ERR_OPTION', async (key, extra) => {
      const { q, k, v } = inputs(shape);
      await expectRejection(() => attention(q, k, v, { shape, layout, backend: be.name, ...extra } as AttentionOptions), OptionError, 'ERR_OPTION', key);
    });

    test('layout with a different causal is ERR_OPTION', async () => {
      const { q, k, v } = inputs(shape);
      await expectRejection(() => attention(q, k, v, { shape, layout, causal: true, backend: be.name }), OptionError, 'ERR_OPTION', 'causal');
      await expectRejection(() => attention(q, k, v, { shape, layout: causalLayout, causal: false, backend: be.name }), OptionError, 'ERR_OPTION', 'causal');
      // Matching or omitted causal is fine.
      await expect(attention(q, k, v, { shape, layout: causalLayout, causal: true, backend: be.name })).resolves.toBeDefined();
      await expect(attention(q, k, v, { shape, layout: causalLayout, backend: be.name })).resolves.toBeDefined();
    });

    test.each([
      ['batch', { batch: 2 }],
      ['heads', { heads: 4, kvHeads: 1 }],
      ['seqQ', { seqQ: 39 }],
      ['seqK', { seqK: 41 }],
    ] as const)('layout built for another %s is ERR_SHAPE', async (key, change) => {
      const s = { ...shape, ...change };
      const { q, k, v } = inputs(s);
      await expectRejection(() => attention(q, k, v, { shape: s, layout, backend: be.name }), ShapeError, 'ERR_SHAPE', `layout.${key}`);
    });

    test('a plain object (a layout as JSON) is not a layout', async () => {
      const { q, k, v } = inputs(shape);
      await expectRejection(() => attention(q, k, v, { shape, layout: layout.toJSON() as never, backend: be.name }), OptionError, 'ERR_OPTION', 'layout');
      await expectRejection(() => attention(q, k, v, { shape, layout: null as never, backend: be.name }), OptionError, 'ERR_OPTION', 'layout');
    });

    test('a layout whose CSR arrays were corrupted after building is refused, not computed', async () => {
      const { q, k, v } = inputs(shape);
      const { q: q2, k: k2 } = inputs(shape);
      const bad = await buildBlockLayout(q2, k2, { shape, window: 4, blockSize: bs, backend: be.name });
      bad.indices[0] = 99; // a key block far past the last
      const err = await attention(q, k, v, { shape, layout: bad, backend: be.name }).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(PsaError);
      expect((err as PsaError).code).toMatch(/^ERR_(OPTION|SHAPE)$/);
    });
  });

  describe('nothing half-done', () => {
    const shape = { batch: 2, heads: 4, kvHeads: 2, seqQ: 37, seqK: 45, headDim: 8 };
    const variants: AttentionOptions[] = [
      {},
      { causal: true, returnLse: true, returnThresholds: true },
      { causal: true, window: 5, globalTokens: 2, blockSize: bs, blocks: { ratio: 0.5 }, topK: 3, returnLse: true },
      { blockSize: bs, blocks: { progressive: 0.9, minBlocks: 1 }, estimate: 'bound', shareAcrossGroup: true, topKRatio: 0.3, softmax: 'poly' },
      { shape: { ...shape, layout: 'bnhd' }, window: [3, 1], softmax: { degree: 3 } },
    ];

    test.each(variants.map((o, i) => [i, o] as const))('inputs are not modified by a successful call (variant %i)', async (_i, o) => {
      const { q, k, v } = inputs(shape, 11);
      const [qc, kc, vc] = [q.slice(), k.slice(), v.slice()];
      const options = { shape, backend: be.name, ...o } as AttentionOptions;
      const optionsText = JSON.stringify(options);
      const r = await attention(q, k, v, options);
      expect(q).toEqual(qc);
      expect(k).toEqual(kc);
      expect(v).toEqual(vc);
      expect(JSON.stringify(options)).toBe(optionsText);
      // The output is a fresh buffer, not an alias of an input.
      expect(r.output.buffer).not.toBe(q.buffer);
      expect(r.output.buffer).not.toBe(k.buffer);
      expect(r.output.buffer).not.toBe(v.buffer);
      // And the layout it used, passed back in, is not modified by a second call either.
      if (r.layout) {
        const before = JSON.stringify(r.layout);
        const { window: _w, globalTokens: _g, blocks: _b, blockSize: _bs, estimate: _e, shareAcrossGroup: _s, ...rest } = options;
        await attention(q, k, v, { ...rest, layout: r.layout });
        expect(JSON.stringify(r.layout)).toBe(before);
      }
    });

    test('Tensor inputs are not modified or disposed by a call', async () => {
      const { q, k, v } = inputs(shape, 12);
      const tq = Tensor.fromFloat32(q.slice(), [2, 4, 37, 8]);
      const tk = Tensor.fromFloat32(k.slice(), [2, 2, 45, 8]);
      const tv = Tensor.fromFloat32(v.slice(), [2, 2, 45, 8]);
      await attention(tq, tk, tv, { causal: true, window: 4, blockSize: bs, blocks: { topBlocks: 1 }, backend: be.name });
      expect(tq.disposed || tk.disposed || tv.disposed).toBe(false);
      expect(tq.data).toEqual(q);
      expect(tk.data).toEqual(k);
      expect(tv.data).toEqual(v);
    });

    test('a failed call returns nothing and leaves no state: the next call gives the same result as a fresh one', async () => {
      const { q, k, v } = inputs(shape, 13);
      const options: AttentionOptions = { shape, causal: true, window: 5, blockSize: bs, blocks: { ratio: 0.5 }, returnLse: true, backend: be.name };
      const first = await attention(q, k, v, options);
      // A NaN in the very last element of v: rejected before any output exists.
      const bad = v.slice();
      bad[bad.length - 1] = NaN;
      let result: unknown = 'untouched';
      await expect(
        attention(q, k, bad, options).then((r) => {
          result = r;
        }),
      ).rejects.toMatchObject({ code: 'ERR_VALUE', argument: 'v' });
      expect(result).toBe('untouched');
      expect(Number.isNaN(bad[bad.length - 1])).toBe(true);
      expect(Array.from(bad.subarray(0, -1))).toEqual(Array.from(v.subarray(0, -1)));
      // Failures of every kind in between change nothing for the next call.
      await expect(attention(q, k, v, { ...options, topK: 0 })).rejects.toBeInstanceOf(OptionError);
      for (const backend of absent) await expect(attention(q, k, v, { ...options, backend })).rejects.toBeInstanceOf(BackendUnavailableError);
      await expect(attention(q.subarray(1), k, v, options)).rejects.toBeInstanceOf(ShapeError);
      const again = await attention(q, k, v, options);
      expect(again.output).toEqual(first.output);
      expect(again.lse).toEqual(first.lse);
      expect(again.stats).toEqual(first.stats);
      expect(again.layout!.toJSON()).toEqual(first.layout!.toJSON());
    });

    test('results of two calls do not share buffers (writing one does not change the other)', async () => {
      const { q, k, v } = inputs(shape, 14);
      const a = await attention(q, k, v, { shape, returnLse: true, backend: be.name });
      const b = await attention(q, k, v, { shape, returnLse: true, backend: be.name });
      const keep = b.output.slice();
      a.output.fill(123);
      a.lse!.fill(5);
      expect(b.output).toEqual(keep);
      expect(b.lse!.every((x) => x !== 5)).toBe(true);
    });
  });
});

describe('unavailable backends', () => {
  test.each(absent)("backend '%s' is ERR_BACKEND_UNAVAILABLE with a reason", async (backend) => {
    const { q, k, v } = inputs();
    for (const call of [
      () => attention(q, k, v, { shape: SHAPE, backend }),
      () => attention(q, k, v, { shape: SHAPE, backend, window: 2, dtype: 'float16' }),
      () => buildBlockLayout(q, k, { shape: SHAPE, backend, window: 2 }),
    ]) {
      const e = (await expectRejection(call, BackendUnavailableError, 'ERR_BACKEND_UNAVAILABLE', 'backend')) as BackendUnavailableError;
      expect(e.backend).toBe(backend);
      expect(typeof e.reason).toBe('string');
      expect(e.reason.trim().length).toBeGreaterThan(0);
      expect(e.message).toContain(backend);
      expect(e.message).toContain(e.reason);
    }
  });

  test.each(absent)("option errors are reported before backend availability (no work for a bad call): '%s'", async (backend) => {
    const { q, k, v } = inputs();
    await expectRejection(() => attention(q, k, v, { shape: SHAPE, backend, topK: 0 }), OptionError, 'ERR_OPTION', 'topK');
  });
});

describe("'auto' with a 16-bit dtype", () => {
  // auto takes the first usable backend in cuda, cpu, js order that computes in the dtype asked for.
  const sixteen = info().backends.find((b) => ['cuda', 'cpu', 'js'].includes(b.name) && b.available && b.dtypes.includes('float16'));
  test(sixteen ? `runs on '${sixteen.name}'` : 'is ERR_DTYPE: no backend auto may choose computes in float16 here', async () => {
    const { q, k, v } = inputs();
    const call = () => attention(q, k, v, { shape: SHAPE, dtype: 'float16' });
    if (sixteen) expect((await call()).backend).toBe(sixteen.name);
    else await expectRejection(call, DtypeError, 'ERR_DTYPE', 'dtype');
  });
});
