/**
 * The device backends (cuda-emu here and in CI, cuda where a GPU is usable) against the
 * float64 oracle: dense and every sparse option alone and combined, odd head dims and lengths,
 * GQA, both memory layouts, empty rows, top-k with ties, the polynomial softmax, layouts moved
 * between backends, device-tensor inputs, and seeded property tests. Sizes stay within the
 * emulated build's budget (lengths up to a few hundred); test/gpu runs real sizes.
 * Accuracy rules: test/device-harness.ts.
 */
import fc from 'fast-check';
import { attention, buildBlockLayout, info } from '../lib/index';
import type { AttentionOptions } from '../lib/index';
import { ShapeLike, randomIntArray, randomQKV, sizes } from './data';
import { expectOutput, expectStats } from './compare';
import { compareOnDevice, Compute, OUTPUT_TOL, roundedInputs } from './device-harness';
import { oracle, optionsFromLayout } from './oracle';
import type { OracleOptions } from './oracle';

const DEVICE_BACKENDS = ['cuda-emu', 'cuda'] as const;
const S = (seqQ: number, seqK: number, o: Partial<ShapeLike> = {}): ShapeLike => ({ batch: 1, heads: 2, kvHeads: 1, seqQ, seqK, headDim: 32, ...o });

for (const backend of DEVICE_BACKENDS) {
  const status = info().backends.find((b) => b.name === backend)!;
  if (!status.available) {
    describe(`device suites [backend ${backend}]`, () => {
      test.skip(`backend '${backend}' unavailable: ${status.reason}`, () => {});
    });
    continue;
  }

  describe(`device suites [backend ${backend}]`, () => {
    const run = (shape: ShapeLike, opts: OracleOptions, seed: number, dtype: Compute = 'float16') => compareOnDevice(backend, shape, opts, seed, { dtype });

    describe('dense', () => {
      test.each([1, 59, 64, 111, 128, 256])('head dim %i, causal, N 97', async (D) => {
        await run(S(97, 97, { headDim: D }), { causal: true }, D);
      });
      const cases: [string, ShapeLike, OracleOptions][] = [
        ['N 1', S(1, 1), { causal: true }],
        ['N 1025, one head, head dim 64', S(1025, 1025, { heads: 1, headDim: 64 }), { causal: true }],
        ['decode: Nq 1, Nk 300', S(1, 300), { causal: true }],
        ['Nq 97 < Nk 200, causal (bottom-right)', S(97, 200), { causal: true }],
        ['Nq 200 > Nk 97, causal (empty rows)', S(200, 97), { causal: true }],
        ['Nq 70 != Nk 150, non-causal', S(70, 150), { causal: false }],
        ['GQA 4 (8 heads, 2 kv heads)', S(130, 130, { heads: 8, kvHeads: 2, headDim: 16 }), { causal: true }],
        ['GQA 8 (MQA)', S(100, 100, { heads: 8, kvHeads: 1, headDim: 16 }), { causal: false }],
        ['bnhd, GQA 2, batch 2', S(90, 120, { batch: 2, heads: 4, kvHeads: 2, layout: 'bnhd' }), { causal: true }],
        ['scale 0.05', S(80, 80), { causal: true, scale: 0.05 }],
      ];
      test.each(cases)('%s', async (_t, shape, opts) => {
        await run(shape, opts, 3);
      });
      test('bfloat16, head dim 59, Nq != Nk', async () => {
        await run(S(97, 150, { headDim: 59 }), { causal: true }, 4, 'bfloat16');
      });
    });

    describe('sparse options alone', () => {
      const cases: [string, ShapeLike, OracleOptions][] = [
        ['window 40 causal', S(200, 200), { causal: true, window: 40 }],
        ['window [30, 10] non-causal', S(150, 180), { causal: false, window: [30, 10] }],
        ['window [30, 0] causal, Nq > Nk (empty rows)', S(200, 90), { causal: true, window: [30, 0] }],
        ['sinks 4', S(200, 200), { causal: true, globalTokens: 4 }],
        ['ratio 0.25', S(300, 300), { causal: true, blocks: { ratio: 0.25 } }],
        ['topBlocks 2, non-causal', S(200, 300), { causal: false, blocks: { topBlocks: 2 } }],
        ['progressive 0.9 min 1 max 3', S(300, 300), { causal: true, blocks: { progressive: 0.9, minBlocks: 1, maxBlocks: 3 } }],
        ['bound estimate, ratio 0.5', S(260, 260), { causal: true, blocks: { ratio: 0.5 }, estimate: 'bound' }],
        ['shared across a GQA group of 4', S(260, 260, { heads: 4, kvHeads: 1 }), { causal: true, blocks: { topBlocks: 2 }, shareAcrossGroup: true }],
        ['blockSize 128, ratio 0.5', S(300, 400), { causal: true, blockSize: 128, blocks: { ratio: 0.5 } }],
        ['topK 8', S(150, 150), { causal: true, topK: 8 }],
        ['topKRatio 0.25, non-causal', S(100, 170), { causal: false, topKRatio: 0.25 }],
      ];
      test.each(cases)('%s', async (_t, shape, opts) => {
        await run(shape, opts, 7);
      });

      test('topK with ties (integer inputs): ties are kept', async () => {
        const shape = S(100, 100, { heads: 1, headDim: 8 });
        const n = sizes(shape);
        const data = { q: randomIntArray(n.q, 1, 1), k: randomIntArray(n.kv, 2, 1), v: randomIntArray(n.kv, 3, 2) };
        const { r } = await compareOnDevice(backend, shape, { causal: true, topK: 5, scale: 0.5 }, data);
        // Exact integer scores: the thresholds are exact, and ties make rows keep more than 5.
        expect(r.stats.keptPairs).toBeGreaterThan(5 * 95);
      });
    });

    describe('softmax', () => {
      test.each([
        ['poly (degree 3)', 'poly'],
        ['degree 5', { degree: 5 }],
        ['custom coefficients (degree 2)', { coefficients: [1, 0.6657850742340087890625, 0.330107033252716064453125] }],
      ] as const)('%s', async (_t, softmax) => {
        await run(S(120, 120), { causal: true, softmax: softmax as OracleOptions['softmax'] }, 9);
      });
    });

    describe('combined', () => {
      test('window + sinks + progressive + topKRatio + poly, GQA 4, bnhd, bfloat16', async () => {
        await run(S(300, 300, { heads: 4, kvHeads: 1, layout: 'bnhd', headDim: 40 }), {
          causal: true, window: 64, globalTokens: 4, blocks: { progressive: 0.8 }, topKRatio: 0.5, softmax: 'poly',
        }, 13, 'bfloat16');
      });
      test('window + ratio + bound + topK, head dim 111, Nq < Nk', async () => {
        await run(S(150, 280, { headDim: 111 }), { causal: true, window: [20, 0], blocks: { ratio: 0.3 }, estimate: 'bound', topK: 16 }, 14);
      });
      test('device tensors in, a device tensor out', async () => {
        await compareOnDevice(backend, S(130, 130, { heads: 4, kvHeads: 2 }), { causal: true, window: 32, blocks: { topBlocks: 1 } }, 15, { tensors: true });
      });
    });

    describe('layouts move between backends', () => {
      test('a layout built by js runs on the device, and the device builds the same layout', async () => {
        const shape = S(260, 260, { heads: 2, kvHeads: 1 });
        const d = roundedInputs(randomQKV(shape, 21), 'float16');
        const opts = { shape, causal: true, window: 32, globalTokens: 2, blocks: { ratio: 0.3 } } as AttentionOptions;
        const jsLayout = await buildBlockLayout(d.q, d.k, { ...opts, backend: 'js' });
        const devLayout = await buildBlockLayout(d.q, d.k, { ...opts, backend });
        expect(Array.from(devLayout.offsets)).toEqual(Array.from(jsLayout.offsets));
        expect(Array.from(devLayout.indices)).toEqual(Array.from(jsLayout.indices));
        expect(Array.from(devLayout.flags)).toEqual(Array.from(jsLayout.flags));
        const viaLayout = await attention(d.q, d.k, d.v, { shape, layout: jsLayout, backend, dtype: 'float16' });
        expect(viaLayout.layout).toBe(jsLayout);
        const want = oracle(d.q, d.k, d.v, shape, optionsFromLayout(jsLayout));
        expectOutput(viaLayout.output, want, OUTPUT_TOL.float16);
        expectStats(viaLayout.stats, want);
      });
    });

    describe('properties (seeded)', () => {
      test('random shapes and options match the oracle', async () => {
        const arb = fc.record({
          seqQ: fc.integer({ min: 1, max: 160 }), seqK: fc.integer({ min: 1, max: 200 }), headDim: fc.constantFrom(1, 8, 24, 64, 72),
          group: fc.constantFrom(1, 2, 4), causal: fc.boolean(), window: fc.option(fc.integer({ min: 1, max: 80 }), { nil: undefined }),
          sinks: fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }), ratio: fc.option(fc.double({ min: 0.1, max: 1, noNaN: true }), { nil: undefined }),
          topK: fc.option(fc.integer({ min: 1, max: 40 }), { nil: undefined }), bnhd: fc.boolean(), bf16: fc.boolean(), seed: fc.integer({ min: 1, max: 1e6 }),
        });
        await fc.assert(
          fc.asyncProperty(arb, async (c) => {
            const shape = S(c.seqQ, c.seqK, { heads: c.group, kvHeads: 1, headDim: c.headDim, layout: c.bnhd ? 'bnhd' : 'bhnd' });
            const opts: OracleOptions = { causal: c.causal, window: c.window, globalTokens: c.sinks, topK: c.topK, ...(c.ratio ? { blocks: { ratio: c.ratio } } : {}) };
            await run(shape, opts, c.seed, c.bf16 ? 'bfloat16' : 'float16');
          }),
          { seed: 20261123, numRuns: 10 },
        );
      });
    });

    describe('errors', () => {
      const shape = { batch: 1, heads: 1, seqQ: 8, headDim: 4 };
      const q = new Float32Array(32);
      test('blockSize that is not a multiple of 64: ERR_OPTION naming backend', async () => {
        await expect(attention(q, q, q, { shape, window: 4, blockSize: 32, backend })).rejects.toMatchObject({ code: 'ERR_OPTION', argument: 'backend' });
      });
      test('dtype float32 on a 16-bit backend: ERR_DTYPE', async () => {
        await expect(attention(q, q, q, { shape, backend, dtype: 'float32' })).rejects.toMatchObject({ code: 'ERR_DTYPE', argument: 'dtype' });
      });
      test('too many key blocks for the selection kernel: ERR_OPTION before any work', async () => {
        const big = { batch: 1, heads: 1, seqQ: 1, seqK: 64 * 4097, headDim: 1 };
        const x = new Float32Array(64 * 4097);
        await expect(attention(new Float32Array(1), x, x, { shape: big, blocks: { ratio: 0.1 }, backend })).rejects.toMatchObject({ code: 'ERR_OPTION', argument: 'backend' });
      });
    });
  });
}
