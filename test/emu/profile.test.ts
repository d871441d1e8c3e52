/**
 * `psa profile` on a small case of the emulated build: the JSON's shape, the forward kernel's
 * Tensor Core FLOPs against the tile walk's count, ratios in range, the steady-state call's host
 * counts, the table, and options it refuses.
 */
import type { ProfileReport } from '../../lib/profile';
import { describeIf, unavailableReason } from '../backends';
import { capture } from '../cli-capture';

afterEach(() => {
  process.exitCode = undefined;
});

/**
 * The dense causal walk (tile_shape.h, forward_traits.h): query tiles of 128 rows at padded d 64
 * and 128 when seqQ > 64 (4 warps of 32 rows), else 64 (4 warps of 16); kBlockN keys a step, 32
 * at padded d 256 and at d 128 with 128 rows. `steps`: the key steps of every query tile (the top-k kernel's walk). `warpSteps`: the
 * steps each warp computes, which skips tiles that start past its last row and every tile when
 * its rows all lie past seq.
 */
function denseCausalWalk(seq: number, headDim: number, heads: number) {
  const padded = headDim <= 64 ? 64 : headDim <= 128 ? 128 : 256;
  const tileRows = padded <= 128 && seq > 64 ? 128 : 64;
  const keys = padded === 256 || (padded === 128 && tileRows === 128) ? 32 : 64;
  const warpRows = tileRows / 4;
  const lastStep = (rowsEnd: number) => Math.floor((Math.min(rowsEnd, seq) - 1) / keys) + 1;
  let steps = 0;
  let warpSteps = 0;
  for (let m0 = 0; m0 < seq; m0 += tileRows) {
    steps += lastStep(m0 + tileRows);
    for (let r0 = m0; r0 < m0 + tileRows && r0 < seq; r0 += warpRows) warpSteps += lastStep(r0 + warpRows);
  }
  return { steps: steps * heads, warpSteps: warpSteps * heads, keys, padded, tileRows, warpRows };
}

/** Tensor Core FLOPs of the dense causal forward: per warp step, 4 * warpRows * kBlockN * padded D (Q K^T and P V). */
function denseCausalForwardFlops(seq: number, headDim: number, heads: number): number {
  const { warpSteps, keys, padded, warpRows } = denseCausalWalk(seq, headDim, heads);
  return warpSteps * 4 * warpRows * keys * padded;
}

describeIf(unavailableReason('cuda-emu'), 'psa profile (emulated build)', () => {
  test('dense causal, seq 160, d 64: the JSON report', async () => {
    const r = await capture(['profile', '--seq', '160', '--heads', '1', '--head-dim', '64', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as ProfileReport;
    // 128-row query tiles at d 64: two CTAs for 160 rows.
    const forward = report.kernels.find((k) => k.name.startsWith('attention_forward_kernel<ForwardTraits<64, 128>'));
    expect(forward).toBeDefined();
    if (!forward) return;
    expect(forward.tensorFlops).toBe(denseCausalForwardFlops(160, 64, 1));
    expect(forward.launches).toBe(1);
    expect(forward.ctas).toBe(2);
    expect(forward.sharedBytesPerFlop).toBeGreaterThan(0);
    expect(forward.conflictWaysMean).toBeGreaterThanOrEqual(1);
    expect(forward.conflictWaysMax).toBeGreaterThanOrEqual(1);
    expect(forward.sectorEfficiency).toBeGreaterThan(0);
    expect(forward.sectorEfficiency).toBeLessThanOrEqual(1);
    expect(forward.barriers).toBeGreaterThan(0);
    // One exponential per score and one correction per row and tile, every lane: 4 lanes per row.
    expect(forward.exp2).toBeGreaterThan(0);
    for (const k of report.kernels) {
      for (const key of ['name', 'tensorFlops', 'sharedBytes', 'conflictWaysMean', 'conflictWaysMax', 'sectorEfficiency', 'barriers', 'exp2']) expect(k).toHaveProperty(key);
    }
    for (const key of ['syncs', 'allocations', 'frees'] as const) {
      expect(Number.isInteger(report.call[key])).toBe(true);
      expect(report.call[key]).toBeGreaterThanOrEqual(0);
    }
    // Steady state: every buffer comes from the stream-ordered pool, nothing from the driver. One
    // synchronisation for the attention call, one for the value checks of its three inputs.
    expect(report.call.allocations).toBe(0);
    expect(report.call.frees).toBe(0);
    expect(report.call.syncs).toBe(1 + 1);
  }, 120_000);

  test('dense causal, seq 160, d 100: 128-row tiles of 32-key steps, odd rows staged', async () => {
    const r = await capture(['profile', '--seq', '160', '--heads', '1', '--head-dim', '100', '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as ProfileReport;
    const forward = report.kernels.find((k) => k.name.startsWith('attention_forward_kernel<ForwardTraits<128, 128>'));
    expect(forward).toBeDefined();
    if (!forward) return;
    const { steps } = denseCausalWalk(160, 100, 1);
    expect(steps).toBe(4 + 5);
    expect(forward.ctas).toBe(2);
    expect(forward.tensorFlops).toBe(denseCausalForwardFlops(160, 100, 1));
    // Q in shared memory: two barriers a step; the output of rows 8-byte aligned (d 100) is stored directly.
    expect(forward.barriers).toBe(2 * steps);
  }, 120_000);

  test('dense causal, seq 97, d 256: 32-key steps, two barriers each; top-k on the same walk', async () => {
    const r = await capture(['profile', '--seq', '97', '--heads', '1', '--head-dim', '256', '--top-k', '8', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as ProfileReport;
    const forward = report.kernels.find((k) => k.name.startsWith('attention_forward_kernel<ForwardTraits<256>'));
    const topk = report.kernels.find((k) => k.name.startsWith('attention_topk_kernel<TopkTraits<256>'));
    expect(forward).toBeDefined();
    expect(topk).toBeDefined();
    if (!forward || !topk) return;
    const { steps, warpSteps } = denseCausalWalk(97, 256, 1);
    expect(steps).toBe(2 + 4);
    // Warps: rows 0-15 and 16-31 one step each, 32-63 two; 64-79 and 80-95 three, 96 four.
    expect(warpSteps).toBe(1 + 1 + 2 + 2 + 3 + 3 + 4);
    expect(forward.ctas).toBe(2);
    expect(forward.tensorFlops).toBe(denseCausalForwardFlops(97, 256, 1));
    // Q stays in shared memory at d 256: no barrier before the walk, two per key step.
    expect(forward.barriers).toBe(2 * steps);
    // Top-k: Q K^T (2 FLOPs a multiply-add) of every 64-row tile on the walk's steps, once per
    // radix pass (4); it skips no warp's steps.
    expect(topk.tensorFlops).toBe(4 * steps * 2 * 64 * 32 * 256);
  }, 120_000);

  test('sparse with top-k, d 59: the table names the forward and top-k kernels', async () => {
    const r = await capture(['profile', '--seq', '128', '--heads', '1', '--head-dim', '59', '--window', '64', '--global-tokens', '4', '--ratio', '0.5', '--top-k', '16']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/attention_forward_kernel<ForwardTraits<64>, F16/);
    expect(r.out).toMatch(/attention_topk_kernel<TopkTraits<64>/);
    // Sparse: the selection's size is read before the layout is built, a second synchronisation.
    expect(r.out).toMatch(/per call \(second of two\): 3 host syncs, 0 device allocations, 0 frees/);
  }, 120_000);

  test('ratio and progressive together: ERR_OPTION naming progressive', async () => {
    const r = await capture(['profile', '--seq', '64', '--ratio', '0.5', '--progressive', '0.9']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^ERR_OPTION: .*progressive/);
  });
});
