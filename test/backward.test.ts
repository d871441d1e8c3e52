/**
 * attentionBackward against the float64 oracle of test/backward-oracle.ts, whose analytic
 * gradients are themselves checked against central finite differences of the float64 forward
 * (kept sets and row maxima held fixed). Odd head dims, Nq != Nk, GQA, both memory layouts,
 * every sparse option, top-k (the forward's thresholds reused), both softmaxes, empty rows.
 */
import { attention, attentionBackward, PsaError, Tensor } from '../lib/index';
import type { AttentionOptions } from '../lib/index';
import { backendUnderTest, BackendUnderTest, describeIf, forEachBackend, testIf, unavailableReason } from './backends';
import { relFrob } from './compare';
import { inputsFor } from './harness';
import { randomArray, randomQKV, ShapeLike } from './data';
import { backwardOracle, frozenLoss, keptSets } from './backward-oracle';
import { OracleShape, selectionOf } from './oracle';

/** A forward on `be` with saveForBackward, its backward (on `backwardOn`), and the oracle's gradients given the kept sets the forward used. */
async function gradients(shape: ShapeLike, options: AttentionOptions, seed: number, be: BackendUnderTest = backendUnderTest('js'), backwardOn: BackendUnderTest = be) {
  const dtype = be.profile.dtypes[0];
  const { q, k, v } = inputsFor(be, randomQKV(shape, seed), dtype);
  const dO = randomArray(q.length, seed + 5);
  const fwd = await attention(q, k, v, { ...options, shape, saveForBackward: true, backend: be.name, dtype });
  const g = await attentionBackward(dO, q, k, v, fwd, { backend: backwardOn.name });
  expect(g.backend).toBe(backwardOn.name);
  const D = shape.headDim;
  const scale = options.scale ?? 1 / Math.sqrt(D);
  const L = fwd.saved!.layout;
  const sets = keptSets(q, k, shape as OracleShape, {
    causal: options.causal ?? false,
    window: L ? L.window : null, globalTokens: L ? L.globalTokens : 0, blockSize: L ? L.blockSize : 64, queryBlockSize: L ? L.queryBlockSize : undefined,
    selected: L ? selectionOf(L) : null,
  }, fwd.saved!.thresholds, scale);
  const want = backwardOracle(q, k, v, dO, shape as OracleShape, sets, scale, options.softmax as never);
  return { q, k, v, dO, g, want, sets, scale, fwd, tolerance: be.profile.gradientTolerance[dtype] ?? 0 };
}

function expectGradients(got: { dq: Float32Array; dk: Float32Array; dv: Float32Array }, want: { dq: Float64Array; dk: Float64Array; dv: Float64Array }, tol: number) {
  for (const key of ['dq', 'dk', 'dv'] as const) {
    const err = relFrob(got[key], want[key]);
    if (!(err <= tol)) throw new Error(`${key}: relative Frobenius error ${err.toExponential(3)} > ${tol}`);
  }
}

const S = (seqQ: number, seqK: number, o: Partial<ShapeLike> = {}): ShapeLike => ({ batch: 1, heads: 2, kvHeads: 1, seqQ, seqK, headDim: 16, ...o });

describe('the oracle gradients agree with central finite differences of the float64 forward', () => {
  test.each([
    ['dense causal', S(9, 9, { headDim: 3 }), { causal: true }],
    ['window + sinks + selected blocks, GQA 2', S(40, 40, { headDim: 4 }), { causal: true, window: 5, globalTokens: 2, blockSize: 16, blocks: { topBlocks: 1 } }],
    ['top-k 3 (thresholds frozen)', S(12, 15, { headDim: 3 }), { causal: false, topK: 3 }],
    // p(f) = 3 + 2f + f^2 has p(1) = 2 p(0) and p'(1) = 2 p'(0) exactly: E is continuously
    // differentiable across integer t, so central differences see its derivative (the
    // minimax fits jump by ~1e-4 at integer t, where every row's maximum sits).
    ['poly softmax (its own derivative)', S(10, 10, { headDim: 3 }), { causal: true, softmax: { coefficients: [3, 2, 1] } }],
    ['bnhd, Nq > Nk (empty rows)', S(14, 9, { headDim: 2, layout: 'bnhd' }), { causal: true }],
  ] as [string, ShapeLike, AttentionOptions][])('%s', async (_t, shape, options) => {
    const { q, k, v, dO, want, sets, scale } = await gradients(shape, options, 3);
    const q64 = Float64Array.from(q);
    const k64 = Float64Array.from(k);
    const v64 = Float64Array.from(v);
    const h = 1e-5;
    const probe = (x: Float64Array, analytic: Float64Array) => {
      for (let t = 0; t < 12; t++) {
        const i = (t * 7919) % x.length;
        const x0 = x[i];
        x[i] = x0 + h;
        const up = frozenLoss(q64, k64, v64, dO, shape as OracleShape, sets, scale, options.softmax as never, want.rowMax);
        x[i] = x0 - h;
        const down = frozenLoss(q64, k64, v64, dO, shape as OracleShape, sets, scale, options.softmax as never, want.rowMax);
        x[i] = x0;
        const fd = (up - down) / (2 * h);
        expect(Math.abs(fd - analytic[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(fd)));
      }
    };
    probe(q64, want.dq);
    probe(k64, want.dk);
    probe(v64, want.dv);
  });
});

forEachBackend('attentionBackward against the oracle', (be) => {
  const run = (why: string | null, title: string, shape: ShapeLike, options: AttentionOptions, seed: number) =>
    testIf(why, title, async () => {
      const { g, want, tolerance } = await gradients(shape, options, seed, be);
      expectGradients(g, want, tolerance);
    });
  const blockSize = (o: AttentionOptions) => o.blockSize ?? (o.window !== undefined || o.globalTokens !== undefined || o.blocks ? 64 : undefined);
  describe('dense causal, N 97, head dims', () => {
    for (const D of [1, 59, 64, 111, 128, 256]) run(be.cannot({ backward: true, headDim: D }), `head dim ${D}`, S(97, 97, { headDim: D }), { causal: true }, D);
  });
  const cases: [string, ShapeLike, AttentionOptions][] = [
    ['Nq 97 < Nk 200, causal', S(97, 200), { causal: true }],
    ['Nq 200 > Nk 97, causal (empty rows)', S(200, 97), { causal: true }],
    ['non-causal, Nq 70 != Nk 150', S(70, 150), { causal: false }],
    ['GQA 4, bnhd', S(60, 60, { heads: 8, kvHeads: 2, layout: 'bnhd' }), { causal: true }],
    ['GQA 8 (MQA)', S(50, 50, { heads: 8, kvHeads: 1, headDim: 8 }), { causal: false }],
    ['window 40', S(150, 150), { causal: true, window: 40 }],
    ['window [30, 10] non-causal', S(120, 140), { causal: false, window: [30, 10] }],
    ['sinks 4', S(130, 130), { causal: true, globalTokens: 4 }],
    ['ratio 0.3, blockSize 32', S(200, 200), { causal: true, blockSize: 32, blocks: { ratio: 0.3 } }],
    ['ratio 0.5, blockSize 64', S(300, 300), { causal: true, blockSize: 64, blocks: { ratio: 0.5 } }],
    ['progressive 0.9, bound, shared across the group', S(200, 200, { heads: 4, kvHeads: 1 }), { causal: true, blockSize: 32, blocks: { progressive: 0.9 }, estimate: 'bound', shareAcrossGroup: true }],
    ['topK 8', S(100, 100), { causal: true, topK: 8 }],
    ['topKRatio 0.25', S(90, 120), { causal: false, topKRatio: 0.25 }],
    ['poly softmax', S(100, 100), { causal: true, softmax: 'poly' }],
    ['degree-5 poly + window + sinks + ratio + topK, GQA 2, bnhd', S(180, 180, { heads: 4, kvHeads: 2, layout: 'bnhd', headDim: 24 }), {
      causal: true, window: 32, globalTokens: 2, blockSize: 32, blocks: { ratio: 0.4 }, topK: 20, softmax: { degree: 5 },
    }],
    ['degree-5 poly + window + sinks + ratio + topK, GQA 2, bnhd, blockSize 64', S(260, 260, { heads: 4, kvHeads: 2, layout: 'bnhd', headDim: 24 }), {
      causal: true, window: 70, globalTokens: 2, blockSize: 64, blocks: { ratio: 0.5 }, topK: 20, softmax: { degree: 5 },
    }],
  ];
  for (const [title, shape, options] of cases) {
    const why = be.cannot({ backward: true, blockSize: blockSize(options), softmax: options.softmax as never, estimate: options.estimate });
    run(why, title, shape, options, 11);
  }
  testIf(be.profile.backwardReason ? null : 'the backend has a backward pass', 'a backend without a backward pass refuses it, naming backend', async () => {
    const shape = S(10, 10);
    const { q, k, v } = inputsFor(be, randomQKV(shape, 1));
    const fwd = await attention(q, k, v, { shape, saveForBackward: true, backend: be.name });
    await expect(attentionBackward(q, q, k, v, fwd, { backend: be.name })).rejects.toMatchObject({ code: 'ERR_OPTION', argument: 'backend' });
  });
  const dims = be.profile.backwardHeadDims;
  testIf(be.profile.backwardReason ?? (dims ? null : 'the backward runs every head dim'), 'a head dim above the backward\'s limit is refused, naming backend', async () => {
    const shape = S(10, 10, { headDim: dims!.max + 1 });
    const { q, k, v } = inputsFor(be, randomQKV(shape, 1));
    const fwd = await attention(q, k, v, { shape, saveForBackward: true, backend: be.name });
    await expect(attentionBackward(q, q, k, v, fwd, { backend: be.name })).rejects.toMatchObject({ code: 'ERR_OPTION', argument: 'backend' });
  });
});

describe('attentionBackward [backend js]: saved state, tensors, errors', () => {
  test('a passed layout: the backward uses it, and cpu Tensors give cpu Tensor gradients', async () => {
    const shape = S(100, 100);
    const { q, k, v } = randomQKV(shape, 4);
    const dO = randomArray(q.length, 9);
    const t = (x: Float32Array, h: number, n: number) => Tensor.fromFloat32(x, [1, h, n, 16]);
    const fwd = await attention(t(q, 2, 100), t(k, 1, 100), t(v, 1, 100), { causal: true, window: 20, saveForBackward: true, backend: 'js' });
    const g = await attentionBackward(t(dO, 2, 100), t(q, 2, 100), t(k, 1, 100), t(v, 1, 100), fwd);
    expect(g.dq).toBeInstanceOf(Tensor);
    const host = await attentionBackward(dO, q, k, v, fwd);
    expect(Array.from(g.dk.data)).toEqual(Array.from(host.dk));
  });

  test('the forward result owns its saved state: changing result.layout later does not change the gradients', async () => {
    const shape = S(130, 130);
    const { q, k, v } = randomQKV(shape, 6);
    const dO = randomArray(q.length, 7);
    const fwd = await attention(q, k, v, { shape, causal: true, blocks: { topBlocks: 1 }, saveForBackward: true, backend: 'js' });
    const before = await attentionBackward(dO, q, k, v, fwd);
    fwd.layout!.indices.fill(0);
    const after = await attentionBackward(dO, q, k, v, fwd);
    expect(Array.from(after.dq)).toEqual(Array.from(before.dq));
  });

  test('coded errors', async () => {
    const shape = S(10, 10);
    const { q, k, v } = randomQKV(shape, 1);
    const plain = await attention(q, k, v, { shape, backend: 'js' });
    const fwd = await attention(q, k, v, { shape, saveForBackward: true, backend: 'js' });
    const cases: [() => Promise<unknown>, string, string][] = [
      [() => attentionBackward(q, q, k, v, plain), 'ERR_OPTION', 'forward'],
      [() => attentionBackward(new Float32Array(3), q, k, v, fwd), 'ERR_SHAPE', 'dO'],
      [() => attentionBackward(q, q, new Float32Array(3), v, fwd), 'ERR_SHAPE', 'k'],
      [() => attentionBackward(q.map(() => NaN), q, k, v, fwd), 'ERR_VALUE', 'dO'],
      [() => attentionBackward(q, q, k, v, fwd, { backend: 'gpu' as never }), 'ERR_OPTION', 'backend'],
      [() => attentionBackward(q, q, k, v, fwd, { deterministic: 'yes' as never }), 'ERR_OPTION', 'deterministic'],
      [() => attentionBackward(q, q, k, v, fwd, { threads: 0 }), 'ERR_OPTION', 'threads'],
    ];
    for (const [call, code, argument] of cases) {
      const e = await call().then(() => null, (x: unknown) => x);
      expect(e).toBeInstanceOf(PsaError);
      expect({ code: (e as PsaError).code, argument: (e as PsaError).argument }).toEqual({ code, argument });
    }
  });
});

describeIf(unavailableReason('cpu'), 'attentionBackward [backend cpu]: threads, saved state of another backend', () => {
  test('gradients are bit-identical with 1 and 3 threads', async () => {
    const shape = S(300, 300, { heads: 4, kvHeads: 2 });
    const { q, k, v } = randomQKV(shape, 12);
    const dO = randomArray(q.length, 13);
    const fwd = await attention(q, k, v, { shape, causal: true, window: 64, globalTokens: 4, blocks: { ratio: 0.3 }, saveForBackward: true, backend: 'cpu' });
    const [one, three] = await Promise.all([1, 3].map((threads) => attentionBackward(dO, q, k, v, fwd, { backend: 'cpu', threads })));
    for (const key of ['dq', 'dk', 'dv'] as const) expect(Buffer.from(three[key].buffer).equals(Buffer.from(one[key].buffer))).toBe(true);
  });

  test('a js forward with query blocks of one row (per-row progressive selection): the cpu backward walks its layout', async () => {
    const shape = S(150, 150, { heads: 2, kvHeads: 1 });
    const options: AttentionOptions = { causal: true, window: 16, globalTokens: 2, blockSize: 32, queryBlockSize: 1, blocks: { progressive: 0.9 }, estimate: 'bound' };
    const { g, want } = await gradients(shape, options, 21, backendUnderTest('js'), backendUnderTest('cpu'));
    expectGradients(g, want, 1e-5);
  });
});
