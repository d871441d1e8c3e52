/**
 * `psa profile` on a small case of the emulated build: the JSON's shape, the forward kernel's
 * Tensor Core FLOPs against the tile walk's count, ratios in range, the steady-state call's host
 * counts, the table, and options it refuses.
 */
import { main } from '../../lib/cli';
import type { ProfileReport } from '../../lib/profile';
import { describeIf, unavailableReason } from '../backends';

async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  try {
    const code = await main(['node', 'psa', ...argv]);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

afterEach(() => {
  process.exitCode = undefined;
});

/** Key steps of the dense causal walk over 64-row query tiles: kBlockN keys a step, 32 at padded d 256 (tile_shape.h). */
function denseCausalSteps(seq: number, headDim: number, heads: number): { steps: number; keys: number; padded: number } {
  const padded = headDim <= 64 ? 64 : headDim <= 128 ? 128 : 256;
  const keys = padded === 256 ? 32 : 64;
  let steps = 0;
  for (let m0 = 0; m0 < seq; m0 += 64) steps += Math.floor((Math.min(m0 + 64, seq) - 1) / keys) + 1;
  return { steps: steps * heads, keys, padded };
}

/** Tensor Core FLOPs of the dense causal forward: per visited 64-row x kBlockN-key tile, 4 * 64 * kBlockN * padded D (Q K^T and P V). */
function denseCausalForwardFlops(seq: number, headDim: number, heads: number): number {
  const { steps, keys, padded } = denseCausalSteps(seq, headDim, heads);
  return steps * 4 * 64 * keys * padded;
}

describeIf(unavailableReason('cuda-emu'), 'psa profile (emulated build)', () => {
  test('dense causal, seq 160, d 64: the JSON report', async () => {
    const r = await capture(['profile', '--seq', '160', '--heads', '1', '--head-dim', '64', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as ProfileReport;
    const forward = report.kernels.find((k) => k.name.startsWith('attention_forward_kernel<ForwardTraits<64>'));
    expect(forward).toBeDefined();
    if (!forward) return;
    expect(forward.tensorFlops).toBe(denseCausalForwardFlops(160, 64, 1));
    expect(forward.launches).toBe(1);
    expect(forward.ctas).toBe(3);
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
    // synchronisation for the attention call, one per input for the value checks.
    expect(report.call.allocations).toBe(0);
    expect(report.call.frees).toBe(0);
    expect(report.call.syncs).toBe(1 + 3);
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
    const { steps } = denseCausalSteps(97, 256, 1);
    expect(steps).toBe(2 + 4);
    expect(forward.ctas).toBe(2);
    expect(forward.tensorFlops).toBe(denseCausalForwardFlops(97, 256, 1));
    // Q stays in shared memory at d 256: no barrier before the walk, two per key step.
    expect(forward.barriers).toBe(2 * steps);
    // Top-k: Q K^T of the same steps once per radix pass (4), half the forward's FLOPs per pass.
    expect(topk.tensorFlops).toBe(4 * (forward.tensorFlops / 2));
  }, 120_000);

  test('sparse with top-k, d 59: the table names the forward and top-k kernels', async () => {
    const r = await capture(['profile', '--seq', '128', '--heads', '1', '--head-dim', '59', '--window', '64', '--global-tokens', '4', '--ratio', '0.5', '--top-k', '16']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/attention_forward_kernel<ForwardTraits<64>/);
    expect(r.out).toMatch(/attention_topk_kernel<TopkTraits<64>/);
    // Sparse: the selection's size is read before the layout is built, a second synchronisation.
    expect(r.out).toMatch(/per call \(second of two\): 5 host syncs, 0 device allocations, 0 frees/);
  }, 120_000);

  test('ratio and progressive together: ERR_OPTION naming progressive', async () => {
    const r = await capture(['profile', '--seq', '64', '--ratio', '0.5', '--progressive', '0.9']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^ERR_OPTION: .*progressive/);
  });
});
