/** fast-check property tests: random shapes and option combinations against the float64 oracle (seeded). */
import fc from 'fast-check';
import { attention, buildBlockLayout, BlockLayout } from '../lib/index';
import type { AttentionOptions } from '../lib/index';
import { forEachBackend } from './backends';
import { expectLayout, expectOutput, expectStats } from './compare';
import { randomQKV, ShapeLike } from './data';
import { compareWithOracle } from './harness';
import { oracle, OracleOptions, oracleSelection, selectionOf } from './oracle';

const shapeArb = (maxSeq: number, maxDim: number) =>
  fc.record({
    batch: fc.integer({ min: 1, max: 2 }),
    kvHeads: fc.integer({ min: 1, max: 3 }),
    group: fc.constantFrom(1, 2, 4),
    seqQ: fc.integer({ min: 1, max: maxSeq }),
    seqK: fc.integer({ min: 1, max: maxSeq }),
    headDim: fc.integer({ min: 1, max: maxDim }),
    layout: fc.constantFrom('bhnd' as const, 'bnhd' as const),
  }).map(({ group, ...s }): ShapeLike => ({ ...s, heads: s.kvHeads * group }));

const blocksArb = fc.oneof(
  fc.record({ ratio: fc.integer({ min: 1, max: 100 }).map((p) => p / 100) }),
  fc.record({ topBlocks: fc.integer({ min: 1, max: 6 }) }),
  fc.record({ progressive: fc.integer({ min: 10, max: 99 }).map((p) => p / 100) }),
).chain((b) =>
  fc.record({ min: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }), extra: fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }) }).map(({ min, extra }) => {
    const out: Record<string, number> = { ...b };
    if (min !== undefined) out.minBlocks = min;
    if (extra !== undefined) out.maxBlocks = (min ?? 0) + extra;
    return out as OracleOptions['blocks'];
  }),
);

const optionsArb = fc.record(
  {
    causal: fc.boolean(),
    scale: fc.option(fc.constantFrom(0.05, 0.3, 1, 2), { nil: undefined }),
    window: fc.option(fc.oneof(fc.integer({ min: 1, max: 100 }), fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 60 }))), { nil: undefined }),
    globalTokens: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
    blockSize: fc.option(fc.constantFrom(16, 32, 48, 64, 128), { nil: undefined }),
    blocks: fc.option(blocksArb, { nil: undefined }),
    estimate: fc.option(fc.constantFrom('mean' as const, 'bound' as const), { nil: undefined }),
    shareAcrossGroup: fc.option(fc.boolean(), { nil: undefined }),
    topk: fc.option(fc.oneof(fc.record({ topK: fc.integer({ min: 1, max: 50 }) }), fc.record({ topKRatio: fc.integer({ min: 1, max: 100 }).map((p) => p / 100) })), { nil: undefined }),
    softmax: fc.option(fc.oneof(fc.constant('exact' as const), fc.constant('poly' as const), fc.record({ degree: fc.integer({ min: 2, max: 5 }) })), { nil: undefined }),
  },
  { requiredKeys: ['causal'] },
).map(({ topk, window, ...o }): OracleOptions => {
  const out: OracleOptions = { ...o, ...(topk ?? {}) };
  if (window !== undefined) out.window = window as number | [number, number];
  // estimate / shareAcrossGroup are block-selection options: give them only with blocks.
  if (!out.blocks) {
    delete out.estimate;
    delete out.shareAcrossGroup;
  }
  for (const key of Object.keys(out) as (keyof OracleOptions)[]) if (out[key] === undefined) delete out[key];
  return out;
});

forEachBackend('properties', (be) => {
  const maxSeq = be.emulated ? 96 : 200;
  test('attention equals the oracle on random shapes and option combinations', async () => {
    await fc.assert(
      fc.asyncProperty(shapeArb(maxSeq, 80), optionsArb, fc.integer({ min: 1, max: 1e6 }), async (shape, opts, seed) => {
        await compareWithOracle(be.name, shape, opts, seed);
      }),
      { seed: 42, numRuns: 60 },
    );
  });

  test('buildBlockLayout selects exactly the oracle blocks (selection only, larger sequences)', async () => {
    await fc.assert(
      fc.asyncProperty(shapeArb(be.emulated ? 128 : 400, 32), optionsArb, blocksArb, fc.integer({ min: 1, max: 1e6 }), async (shape, o, blocks, seed) => {
        const opts: OracleOptions = { causal: o.causal, window: o.window, globalTokens: o.globalTokens, blockSize: o.blockSize ?? 16, blocks, estimate: o.estimate, shareAcrossGroup: o.shareAcrossGroup };
        for (const key of Object.keys(opts) as (keyof OracleOptions)[]) if (opts[key] === undefined) delete opts[key];
        const { q, k } = randomQKV(shape, seed);
        const layout = await buildBlockLayout(q, k, { ...(opts as AttentionOptions), shape, backend: be.name });
        expect(selectionOf(layout)).toEqual(oracleSelection(q, k, shape, opts).selection);
      }),
      { seed: 7, numRuns: 60 },
    );
  });

  test('fromSelection with random hand-picked blocks equals the oracle given that selection', async () => {
    await fc.assert(
      fc.asyncProperty(shapeArb(150, 24), optionsArb, fc.integer({ min: 1, max: 1e6 }), async (shape, o, seed) => {
        const bs = o.blockSize ?? 32;
        const win: [number, number] | null = o.window === undefined ? null : typeof o.window === 'number' ? (o.causal ? [o.window - 1, 0] : [o.window - 1, o.window - 1]) : [o.window[0], o.window[1]];
        const geometry = { batch: shape.batch, heads: shape.heads, seqQ: shape.seqQ, seqK: shape.seqK!, blockSize: bs, causal: o.causal!, window: win, globalTokens: o.globalTokens ?? 0 };
        const nKB = Math.ceil(shape.seqK! / bs);
        const lastRow = (I: number) => Math.min(shape.seqQ, (I + 1) * bs) - 1 + shape.seqK! - shape.seqQ;
        let x = seed;
        const chosen: number[][] = [];
        for (let b = 0; b < shape.batch; b++) for (let h = 0; h < shape.heads; h++) for (let I = 0; I < Math.ceil(shape.seqQ / bs); I++) {
          const pick: number[] = [];
          for (let J = 0; J < nKB; J++) {
            x = (x * 1103515245 + 12345) % 2147483648;
            if (x % 3 === 0 && (!o.causal || J * bs <= lastRow(I))) pick.push(J);
          }
          chosen.push(pick);
        }
        const nQB = Math.ceil(shape.seqQ / bs);
        const layout = BlockLayout.fromSelection(geometry, (b, h, I) => chosen[(b * shape.heads + h) * nQB + I]);
        const { q, k, v } = randomQKV(shape, seed);
        const oopts: OracleOptions = { causal: o.causal, window: win ?? undefined, globalTokens: geometry.globalTokens, blockSize: bs, selected: chosen, topK: o.topK, topKRatio: o.topKRatio, softmax: o.softmax };
        const want = oracle(q, k, v, shape, oopts);
        expectLayout(layout, want);
        const r = await attention(q, k, v, { shape, causal: o.causal, layout, topK: o.topK, topKRatio: o.topKRatio, softmax: o.softmax, backend: be.name });
        expectOutput(r.output, want);
        expectStats(r.stats, want);
      }),
      { seed: 1234, numRuns: 40 },
    );
  });
});
