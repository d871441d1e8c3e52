/**
 * fast-check property tests on every backend: random shapes and option combinations against
 * the float64 oracle (seeded), drawn from what the backend's profile runs (block sizes,
 * compute types) within its size budget.
 */
import fc from 'fast-check';
import { buildBlockLayout, BlockLayout } from '../lib/index';
import type { AttentionOptions } from '../lib/index';
import { BackendUnderTest, forEachBackend } from './backends';
import { expectSelection } from './compare';
import { randomQKV, ShapeLike } from './data';
import { compareWithOracle, inputsFor } from './harness';
import { OracleOptions, OracleSoftmax, oracleSelection, optionsFromLayout } from './oracle';

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

/** Options the backend can run: its block sizes, and softmaxes without a known defect. */
const optionsArb = (be: BackendUnderTest) => fc.record(
  {
    causal: fc.boolean(),
    scale: fc.option(fc.constantFrom(0.05, 0.3, 1, 2), { nil: undefined }),
    window: fc.option(fc.oneof(fc.integer({ min: 1, max: 100 }), fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 60 }))), { nil: undefined }),
    globalTokens: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
    blockSize: fc.option(fc.constantFrom(...blockSizesOf(be)), { nil: undefined }),
    blocks: fc.option(blocksArb, { nil: undefined }),
    estimate: fc.option(fc.constantFrom('mean' as const, 'bound' as const), { nil: undefined }),
    shareAcrossGroup: fc.option(fc.boolean(), { nil: undefined }),
    topk: fc.option(fc.oneof(fc.record({ topK: fc.integer({ min: 1, max: 50 }) }), fc.record({ topKRatio: fc.integer({ min: 1, max: 100 }).map((p) => p / 100) })), { nil: undefined }),
    softmax: fc.option(fc.constantFrom(...softmaxesOf(be)), { nil: undefined }),
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

/** The block sizes drawn: small and tile-sized ones, as far as the backend runs them. */
function blockSizesOf(be: BackendUnderTest): number[] {
  return [16, 32, 48, 64, 128].filter((bs) => be.cannot({ blockSize: bs }) === null);
}

function softmaxesOf(be: BackendUnderTest): OracleSoftmax[] {
  const all: OracleSoftmax[] = ['exact', 'poly', { degree: 2 }, { degree: 3 }, { degree: 4 }, { degree: 5 }];
  return all.filter((softmax) => be.cannot({ softmax }) === null);
}

forEachBackend('properties', (be) => {
  const { budget, dtypes } = be.profile;
  const smallest = blockSizesOf(be)[0];
  test('attention equals the oracle on random shapes and option combinations', async () => {
    await fc.assert(
      fc.asyncProperty(shapeArb(budget.propertySeq, 80), optionsArb(be), fc.constantFrom(...dtypes), fc.integer({ min: 1, max: 1e6 }), async (shape, opts, dtype, seed) => {
        await compareWithOracle(be, shape, opts, seed, { dtype });
      }),
      { seed: 42, numRuns: budget.propertyRuns },
    );
  });

  test("buildBlockLayout selects the oracle's blocks, within the profile's tolerance (selection only, larger sequences)", async () => {
    await fc.assert(
      fc.asyncProperty(shapeArb(budget.selectionPropertySeq, 32), optionsArb(be), blocksArb, fc.integer({ min: 1, max: 1e6 }), async (shape, o, blocks, seed) => {
        const opts: OracleOptions = { causal: o.causal, window: o.window, globalTokens: o.globalTokens, blockSize: o.blockSize ?? smallest, blocks, estimate: o.estimate, shareAcrossGroup: o.shareAcrossGroup };
        for (const key of Object.keys(opts) as (keyof OracleOptions)[]) if (opts[key] === undefined) delete opts[key];
        const { q, k } = inputsFor(be, randomQKV(shape, seed));
        const layout = await buildBlockLayout(q, k, { ...(opts as AttentionOptions), shape, backend: be.name, dtype: dtypes[0] });
        expectSelection(layout, oracleSelection(q, k, shape, opts), be.profile.selectionTolerance);
      }),
      { seed: 7, numRuns: budget.propertyRuns },
    );
  });

  test('fromSelection with random hand-picked blocks equals the oracle given that selection', async () => {
    await fc.assert(
      fc.asyncProperty(shapeArb(150, 24), optionsArb(be), fc.integer({ min: 1, max: 1e6 }), async (shape, o, seed) => {
        const bs = o.blockSize ?? smallest;
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
        // The layout holds the geometry and the blocks it was given; the oracle is then given them.
        expect(optionsFromLayout(layout)).toEqual({ causal: o.causal, window: win ?? undefined, globalTokens: geometry.globalTokens, blockSize: bs, queryBlockSize: bs, selected: chosen });
        const attend: OracleOptions = { causal: o.causal, topK: o.topK, topKRatio: o.topKRatio, softmax: o.softmax };
        for (const key of Object.keys(attend) as (keyof OracleOptions)[]) if (attend[key] === undefined) delete attend[key];
        await compareWithOracle(be, shape, attend, seed, { layout });
      }),
      { seed: 1234, numRuns: Math.ceil((budget.propertyRuns * 2) / 3) },
    );
  });
});
