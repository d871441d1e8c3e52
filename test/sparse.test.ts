/** Every sparse option alone and combined, top-k with ties, optional outputs and stats, against the oracle, on every backend. */
import { attention } from '../lib/index';
import { forEachBackend, testIf } from './backends';
import type { ComputeType } from './backends';
import { randomArray, randomIntArray, ShapeLike, sizes } from './data';
import { compareWithOracle, Compared } from './harness';
import { OracleOptions } from './oracle';

const S = (seqQ: number, seqK: number, o: Partial<ShapeLike> = {}): ShapeLike => ({ batch: 1, heads: 2, kvHeads: 1, seqQ, seqK, headDim: 32, ...o });

forEachBackend('sparse', (be) => {
  const run = (shape: ShapeLike, opts: OracleOptions, seed: number, dtype?: ComputeType) => compareWithOracle(be, shape, opts, seed, { dtype });
  /** One test per case, skipped with the profile's reason where the backend cannot run its block size. */
  const cases = (list: [string, OracleOptions, ShapeLike][], seed: number, also?: (result: Compared, opts: OracleOptions, shape: ShapeLike) => void) => {
    for (const [title, opts, shape] of list) {
      testIf(be.cannot({ blockSize: opts.blockSize }), title, async () => {
        const result = await run(shape, opts, seed);
        also?.(result, opts, shape);
      });
    }
  };

  describe('window alone', () => {
    cases([
      ['w=16 causal', { causal: true, window: 16 }, S(150, 150)],
      ['w=16 non-causal', { causal: false, window: 16 }, S(150, 150)],
      ['w=1 causal (the diagonal only)', { causal: true, window: 1 }, S(70, 70)],
      ['w=1 non-causal', { causal: false, window: 1 }, S(70, 70)],
      ['w larger than Nk, causal', { causal: true, window: 500 }, S(90, 120)],
      ['[8, 3] causal', { causal: true, window: [8, 3] }, S(120, 150)],
      ['[8, 3] non-causal', { causal: false, window: [8, 3] }, S(120, 150)],
      ['[0, 0] non-causal', { causal: false, window: [0, 0] }, S(40, 40)],
      ['[0, 20] non-causal (look ahead only)', { causal: false, window: [0, 20] }, S(80, 60)],
      ['[30, 0] causal, Nq > Nk (empty rows)', { causal: true, window: [30, 0] }, S(150, 90)],
      ['w=10 non-causal, Nq > Nk (window off the keys for early rows)', { causal: false, window: 10 }, S(150, 60)],
      ['w=33 causal bnhd', { causal: true, window: 33 }, S(130, 130, { layout: 'bnhd', heads: 4, kvHeads: 2 })],
      ['w=40 causal, 200 tokens', { causal: true, window: 40 }, S(200, 200)],
      ['[30, 10] non-causal, Nq < Nk', { causal: false, window: [30, 10] }, S(150, 180)],
    ], 11);
  });

  describe('globalTokens alone (sinks only)', () => {
    test.each([
      [4, true, S(100, 100)],
      [4, false, S(100, 100)],
      [1, true, S(60, 130)],
      [200, true, S(50, 100)],
      [3, true, S(120, 60)],
    ] as const)('G=%i causal=%s', async (G, causal, shape) => {
      const { want } = await run(shape, { causal, globalTokens: G }, 12);
      expect(want.sparse).toBe(true);
    });
  });

  describe('blocks alone', () => {
    cases([
      ['ratio 0.25 causal bs16', { causal: true, blockSize: 16, blocks: { ratio: 0.25 } }, S(160, 160)],
      ['ratio 0.5 non-causal bs32', { causal: false, blockSize: 32, blocks: { ratio: 0.5 } }, S(150, 170)],
      ['ratio 1 causal', { causal: true, blockSize: 16, blocks: { ratio: 1 } }, S(100, 100)],
      ['ratio 0.14 of 50 candidates (1e-9 tolerance)', { causal: false, blockSize: 16, blocks: { ratio: 0.14 } }, S(16, 800, { headDim: 4 })],
      ['ratio 0.3 with min 2 max 3', { causal: true, blockSize: 16, blocks: { ratio: 0.3, minBlocks: 2, maxBlocks: 3 } }, S(200, 200)],
      ['topBlocks 2', { causal: true, blockSize: 16, blocks: { topBlocks: 2 } }, S(150, 150)],
      ['topBlocks 3 with minBlocks 5', { causal: false, blockSize: 16, blocks: { topBlocks: 3, minBlocks: 5 } }, S(100, 130)],
      ['topBlocks 50 (more than the candidates)', { causal: true, blockSize: 16, blocks: { topBlocks: 50 } }, S(100, 100)],
      ['progressive 0.9', { causal: true, blockSize: 16, blocks: { progressive: 0.9 } }, S(180, 180)],
      ['progressive 0.5 min 1 max 4', { causal: false, blockSize: 16, blocks: { progressive: 0.5, minBlocks: 1, maxBlocks: 4 } }, S(120, 200)],
      ['progressive 0.99 bs64 Nq > Nk', { causal: true, blockSize: 64, blocks: { progressive: 0.99 } }, S(200, 150)],
      ['estimate bound ratio 0.25', { causal: true, blockSize: 16, blocks: { ratio: 0.25 }, estimate: 'bound' }, S(160, 160)],
      ['estimate bound progressive 0.8', { causal: false, blockSize: 32, blocks: { progressive: 0.8 }, estimate: 'bound' }, S(130, 190)],
      ['shareAcrossGroup ratio 0.3 (GQA 4)', { causal: true, blockSize: 16, blocks: { ratio: 0.3 }, shareAcrossGroup: true }, S(130, 130, { heads: 8, kvHeads: 2 })],
      ['shareAcrossGroup bound topBlocks 2 (MQA)', { causal: true, blockSize: 16, blocks: { topBlocks: 2 }, estimate: 'bound', shareAcrossGroup: true }, S(100, 100, { heads: 4, kvHeads: 1 })],
      ['shareAcrossGroup with MHA (groups of one)', { causal: true, blockSize: 16, blocks: { ratio: 0.4 }, shareAcrossGroup: true }, S(100, 100, { heads: 2, kvHeads: 2 })],
      // At the device kernels' tile.
      ['ratio 0.25 (blockSize 64)', { causal: true, blocks: { ratio: 0.25 } }, S(300, 300)],
      ['topBlocks 2 non-causal (blockSize 64)', { causal: false, blocks: { topBlocks: 2 } }, S(200, 300)],
      ['progressive 0.9 min 1 max 3 (blockSize 64)', { causal: true, blocks: { progressive: 0.9, minBlocks: 1, maxBlocks: 3 } }, S(300, 300)],
      ['estimate bound ratio 0.5 (blockSize 64)', { causal: true, blocks: { ratio: 0.5 }, estimate: 'bound' }, S(260, 260)],
      ['shareAcrossGroup topBlocks 2 (GQA 4, blockSize 64)', { causal: true, blocks: { topBlocks: 2 }, shareAcrossGroup: true }, S(260, 260, { heads: 4, kvHeads: 1 })],
      ['ratio 0.5 blockSize 128, Nq < Nk', { causal: true, blockSize: 128, blocks: { ratio: 0.5 } }, S(300, 400)],
    ], 13, ({ r, want }, opts, shape) => {
      if (!opts.shareAcrossGroup) return;
      const group = shape.heads / (shape.kvHeads ?? shape.heads);
      for (let h = 0; h < shape.heads; h++) {
        for (let I = 0; I < want.numQueryBlocks; I++) expect(r.layout!.selectedBlocks(0, h, I)).toEqual(r.layout!.selectedBlocks(0, h - (h % group), I));
      }
    });
    testIf(be.cannot({ blockSize: 16 }), 'ratio 0.14 of 50 candidates keeps 7 blocks, not 8 (0.14 * 50 = 7.000000000000001 in float64)', async () => {
      expect(0.14 * 50).toBeGreaterThan(7);
      const { r } = await run(S(16, 800, { heads: 1, headDim: 4 }), { causal: false, blockSize: 16, blocks: { ratio: 0.14 } }, 14);
      expect(r.layout!.selectedBlocks(0, 0, 0).length).toBe(7);
    });
  });

  describe('top-k alone', () => {
    test.each([
      [{ causal: true, topK: 8 }, S(120, 120)],
      [{ causal: false, topK: 1 }, S(60, 90)],
      [{ causal: true, topK: 200 }, S(100, 100)],
      [{ causal: true, topKRatio: 0.25 }, S(120, 120)],
      [{ causal: false, topKRatio: 1 }, S(50, 50)],
      [{ causal: true, topKRatio: 0.1 }, S(150, 100)],
      [{ causal: false, topKRatio: 0.14 }, S(20, 50)], // 0.14 * 50 = 7.000000000000001: k = 7
      [{ causal: false, topKRatio: 0.25 }, S(100, 170)],
    ] as [OracleOptions, ShapeLike][])('%j', async (opts, shape) => {
      await run(shape, opts, 15);
    });
  });

  describe('combined, in every compute type of the profile', () => {
    const combined: [string, OracleOptions, ShapeLike][] = [
      ['window + sinks', { causal: true, window: 20, globalTokens: 4 }, S(150, 150)],
      ['window + sinks + ratio', { causal: true, window: 16, globalTokens: 2, blockSize: 16, blocks: { ratio: 0.2 } }, S(180, 180)],
      ['[l,r] non-causal + sinks + topBlocks + topK', { causal: false, window: [10, 5], globalTokens: 3, blockSize: 32, blocks: { topBlocks: 1 }, topK: 12 }, S(150, 170)],
      ['window + progressive + bound + share + topKRatio', { causal: true, window: 24, blockSize: 16, blocks: { progressive: 0.7, maxBlocks: 3 }, estimate: 'bound', shareAcrossGroup: true, topKRatio: 0.5 }, S(170, 170, { heads: 4, kvHeads: 2 })],
      ['everything, Nq < Nk, bnhd', { causal: true, window: [12, 0], globalTokens: 5, blockSize: 16, blocks: { ratio: 0.3, minBlocks: 1 }, topK: 10 }, S(70, 200, { layout: 'bnhd', heads: 4, kvHeads: 1 })],
      ['everything, Nq > Nk, bnhd', { causal: true, window: 8, globalTokens: 2, blockSize: 16, blocks: { progressive: 0.9 }, topKRatio: 0.3 }, S(200, 90, { layout: 'bnhd', heads: 2, kvHeads: 2 })],
      ['sinks + blocks, no window', { causal: true, globalTokens: 8, blockSize: 32, blocks: { topBlocks: 2 } }, S(200, 200)],
      ['blockSize 48 (not a power of two), D=111', { causal: true, window: 30, blockSize: 48, blocks: { ratio: 0.4 }, topK: 20 }, S(200, 230, { headDim: 111 })],
      ['blockSize 256 (one query block), D=256', { causal: false, globalTokens: 4, blockSize: 256, blocks: { topBlocks: 1 } }, S(97, 300, { headDim: 256 })],
      ['blockSize 128, progressive, D=59, GQA 8', { causal: true, window: [40, 0], blockSize: 128, blocks: { progressive: 0.9, minBlocks: 1 } }, S(150, 400, { headDim: 59, heads: 8, kvHeads: 1 })],
      ['non-causal window covering everything + blocks (no candidates)', { causal: false, window: 1000, blockSize: 16, blocks: { ratio: 0.5 } }, S(60, 60)],
      ['window + sinks + progressive + topKRatio + poly, GQA 4, bnhd', { causal: true, window: 64, globalTokens: 4, blocks: { progressive: 0.8 }, topKRatio: 0.5, softmax: 'poly' }, S(300, 300, { heads: 4, kvHeads: 1, layout: 'bnhd', headDim: 40 })],
      ['[l,r] non-causal + sinks + topBlocks + topK (blockSize 128)', { causal: false, window: [10, 5], globalTokens: 3, blockSize: 128, blocks: { topBlocks: 1 }, topK: 12 }, S(300, 400)],
      ['everything, Nq > Nk, bnhd (blockSize 64)', { causal: true, window: 8, globalTokens: 2, blocks: { progressive: 0.9 }, topKRatio: 0.3 }, S(400, 300, { layout: 'bnhd', heads: 2, kvHeads: 2 })],
      ['window + ratio + bound + topK, D=111, Nq < Nk', { causal: true, window: [20, 0], blocks: { ratio: 0.3 }, estimate: 'bound', topK: 16 }, S(150, 280, { headDim: 111 })],
    ];
    for (const dtype of be.profile.dtypes) {
      for (const [title, opts, shape] of combined) {
        testIf(be.cannot({ blockSize: opts.blockSize }), `${title} (${dtype})`, async () => {
          await run(shape, opts, 16, dtype);
        });
      }
    }
  });

  test(`tensors in (at '${be.profile.tensorHome}'), a tensor out`, async () => {
    await compareWithOracle(be, S(130, 130, { heads: 4, kvHeads: 2 }), { causal: true, window: 32, blocks: { topBlocks: 1 } }, 15, { tensors: true });
  });

  test('topKRatio 0.14 of 50 allowed keys keeps 7 per row (1e-9 tolerance)', async () => {
    const { r } = await run(S(20, 50, { heads: 1 }), { causal: false, topKRatio: 0.14 }, 15);
    expect(r.stats.keptPairs).toBe(20 * 7);
  });

  describe('top-k ties are kept', () => {
    test('duplicated keys: both copies of the k-th score are kept', async () => {
      const shape = S(40, 64, { heads: 1, kvHeads: 1, headDim: 16 });
      const n = sizes(shape);
      const q = randomArray(n.q, 1);
      const k = randomArray(n.kv, 2);
      for (let j = 1; j < 64; j += 2) k.copyWithin(j * 16, (j - 1) * 16, j * 16); // key j+1 = key j
      const v = randomArray(n.kv, 3);
      for (const topK of [1, 3, 5]) {
        const { r, want } = await compareWithOracle(be, shape, { causal: false, topK }, { q, k, v });
        // Each row keeps an even number of keys (pairs tie exactly): at least topK + 1 for odd topK.
        for (let i = 0; i < 40; i++) expect(want.keptCount[i] % 2).toBe(0);
        expect(r.stats.keptPairs).toBe(want.stats.keptPairs);
        expect(r.stats.keptPairs).toBeGreaterThanOrEqual(40 * (topK + 1));
      }
    });
    test('integer data: massive exact ties (topK and topKRatio, causal, window)', async () => {
      const shape = S(90, 90, { heads: 2, kvHeads: 1, headDim: 4 });
      const n = sizes(shape);
      const data = { q: randomIntArray(n.q, 4, 1), k: randomIntArray(n.kv, 5, 1), v: randomArray(n.kv, 6) };
      for (const opts of [
        { causal: true, scale: 1, topK: 4 },
        { causal: false, scale: 1, topKRatio: 0.2 },
        { causal: true, scale: 1, window: 30, globalTokens: 2, topK: 7 },
      ] as OracleOptions[]) {
        const { r, want } = await compareWithOracle(be, shape, opts, data);
        expect(r.stats.keptPairs).toBe(want.stats.keptPairs);
      }
    });
    test('integer data, topK 5: exact thresholds, and ties make rows keep more than 5', async () => {
      const shape = S(100, 100, { heads: 1, headDim: 8 });
      const n = sizes(shape);
      const data = { q: randomIntArray(n.q, 1, 1), k: randomIntArray(n.kv, 2, 1), v: randomIntArray(n.kv, 3, 2) };
      const { r, want } = await compareWithOracle(be, shape, { causal: true, topK: 5, scale: 0.5 }, data);
      expect(Array.from(r.thresholds!)).toEqual(Array.from(want.thresholds));
      expect(r.stats.keptPairs).toBe(want.stats.keptPairs);
      expect(r.stats.keptPairs).toBeGreaterThan(5 * 95);
    });
  });

  describe('optional outputs and stats', () => {
    test('no returnLse / returnThresholds: absent', async () => {
      const shape = S(40, 40);
      const d = { q: randomArray(sizes(shape).q, 1), k: randomArray(sizes(shape).kv, 2), v: randomArray(sizes(shape).kv, 3) };
      const r = await attention(d.q, d.k, d.v, { shape, causal: true, window: 8, topK: 3, backend: be.name, dtype: be.profile.dtypes[0] });
      expect(r.lse).toBeUndefined();
      expect(r.thresholds).toBeUndefined();
      expect(r.backend).toBe(be.name);
    });
    test('thresholds are -inf everywhere without top-k, and where |A_i| <= k', async () => {
      const { r, want } = await run(S(50, 50), { causal: true, window: 6 }, 17);
      expect(Array.from(r.thresholds!).every((x) => x === -Infinity)).toBe(true);
      const t = await run(S(50, 50), { causal: true, topK: 10 }, 17);
      for (let i = 0; i < 50; i++) expect(t.r.thresholds![i] === -Infinity).toBe(i + 1 <= 10);
      expect(want.stats.density).toBeLessThan(1);
    });
    test('stats: density, pairs, empty rows, blocks visited, on a hand-countable case', async () => {
      // Nq=4, Nk=6, causal, window 2: rows see keys {1,2},{2,3},{3,4},{4,5}: 8 kept of 3+4+5+6 = 18 allowed.
      const shape: ShapeLike = { batch: 1, heads: 1, seqQ: 4, seqK: 6, headDim: 2 };
      const { r } = await run(shape, { causal: true, window: 2 }, 18);
      expect(r.stats.keptPairs).toBe(8);
      expect(r.stats.allowedPairs).toBe(18);
      expect(r.stats.density).toBeCloseTo(8 / 18, 12);
      expect(r.stats.emptyRows).toBe(0);
      expect(r.stats.blocksVisited).toBe(1);
      expect(r.stats.blocksDense).toBe(1);
    });
    test('rows before the first key under causal are empty, never NaN', async () => {
      const shape: ShapeLike = { batch: 1, heads: 1, seqQ: 5, seqK: 1, headDim: 3 };
      const { r } = await run(shape, { causal: true, window: 1 }, 19);
      expect(r.stats.emptyRows).toBe(4);
      expect(r.stats.allowedPairs).toBe(1);
    });
    test('blocks alone with maxBlocks 0: nothing kept, density 0, every row empty (O = 0, LSE = -inf)', async () => {
      const shape = S(40, 40);
      const { r, want } = await run(shape, { causal: true, blockSize: be.profile.blockSizes[0], blocks: { ratio: 0.5, maxBlocks: 0 } }, 20);
      expect(want.stats.keptPairs).toBe(0);
      expect(r.stats.density).toBe(0);
      expect(r.stats.emptyRows).toBe(2 * 40);
      expect(Array.from(r.output).every((x) => x === 0)).toBe(true);
      expect(Array.from(r.lse!).every((x) => x === -Infinity)).toBe(true);
    });
  });
});
