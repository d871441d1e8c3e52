/**
 * The device suites at real sizes (4k to 64k tokens), for a machine with a CUDA GPU:
 *
 *   npx jest test/gpu
 *
 * A full float64 oracle is out of reach at these sizes, so each case checks a sample of query
 * rows in float64 (test/gpu/sampled-oracle.ts), given the layout and thresholds the device
 * used, and checks the selection's shape (counts per row) against the options. Without a
 * usable device every case is skipped with the reason. Tolerances: the cuda profile (test/profiles.ts).
 */
import { attention } from '../../lib/index';
import type { AttentionOptions, BlockLayout } from '../../lib/index';
import { backendUnderTest, describeIf, unavailableReason } from '../backends';
import { randomQKV, ShapeLike } from '../data';
import { inputsFor } from '../harness';
import { outputTolerance } from '../profiles';
import { sampledRows } from './sampled-oracle';

const be = backendUnderTest('cuda');

interface GpuCase {
  name: string;
  shape: ShapeLike;
  options: AttentionOptions;
}

const shape = (n: number, o: Partial<ShapeLike> = {}): ShapeLike => ({ batch: 1, heads: 4, kvHeads: 1, seqQ: n, seqK: n, headDim: 128, ...o });

const CASES: GpuCase[] = [
  { name: 'dense causal, 4k, d128, GQA 4', shape: shape(4096), options: { causal: true } },
  { name: 'dense causal, 16k, d64, bf16', shape: shape(16384, { headDim: 64 }), options: { causal: true, dtype: 'bfloat16' } },
  { name: 'window 512 + 4 sinks + 25% of blocks, 16k, d128', shape: shape(16384), options: { causal: true, window: 512, globalTokens: 4, blocks: { ratio: 0.25 } } },
  { name: 'progressive 0.9 + topKRatio 0.5, 16k, d64, bnhd', shape: shape(16384, { headDim: 64, layout: 'bnhd' }), options: { causal: true, window: 512, blocks: { progressive: 0.9 }, topKRatio: 0.5 } },
  { name: 'window 512 + 25% of blocks, 64k, d64, poly', shape: shape(65536, { heads: 2, headDim: 64 }), options: { causal: true, window: 512, globalTokens: 4, blocks: { ratio: 0.25 }, softmax: 'poly' } },
  { name: 'decode: 1 query against 64k keys, d128, top-k 256', shape: shape(1, { seqK: 65536, heads: 8, kvHeads: 2 }), options: { causal: true, topK: 256 } },
  { name: 'head dim 256, 4k, Nq != Nk', shape: shape(3000, { seqK: 4097, headDim: 256 }), options: { causal: true, window: 256, blocks: { topBlocks: 8 } } },
];

const unavailable = unavailableReason('cuda');
describeIf(unavailable === null ? null : `backend 'cuda' unavailable: ${unavailable}`, 'GPU suites [backend cuda]', () => {
  describe.each(CASES)('$name', ({ shape: s, options }) => {
    test('sampled rows match the float64 oracle given the same layout and thresholds', async () => {
      const dtype = options.dtype ?? be.profile.dtypes[0];
      const d = inputsFor(be, randomQKV(s, 5), dtype);
      const r = await attention(d.q, d.k, d.v, { ...options, shape: s, backend: 'cuda', dtype, returnLse: true, returnThresholds: true });
      expect(r.backend).toBe('cuda');
      const check = sampledRows(d, s, options, r.layout as BlockLayout | undefined, r.thresholds!, 48, 17);
      const err = check.relFrob(r.output);
      expect(err).toBeLessThanOrEqual(outputTolerance(be.profile, dtype));
      check.expectLse(r.lse!, be.profile.lseTolerance);
      if (r.layout) expect(r.stats.blocksVisited).toBe(r.layout.size);
      expect(r.stats.density).toBeGreaterThan(0);
      expect(r.stats.density).toBeLessThanOrEqual(1);
    }, 600_000);
  });
});
