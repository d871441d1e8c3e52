/**
 * `psa profile --decode` on a small cuda-emu cache: the JSON's shape, the plan's CTAs (one per
 * query row), the attention kernel's global reads against the pages the step reports (each read
 * page's keys and values once per kv group, and the tile's queries: nothing else), the
 * estimates' reads (each page's metadata once per kv head), the
 * steady-state step's host counts, the table, and options it refuses.
 */
import type { DecodeProfileReport } from '../../lib/profile-decode';
import { describeIf, unavailableReason } from '../backends';
import { capture } from '../cli-capture';

afterEach(() => {
  process.exitCode = undefined;
});

const CASE = ['--seq', '1024', '--heads', '8', '--kv-heads', '2', '--head-dim', '64', '--window', '128', '--global-tokens', '4'];

describeIf(unavailableReason('cuda-emu'), 'psa profile --decode (emulated build)', () => {
  test('progressive 0.95: the JSON report, the attention reads exactly the pages read', async () => {
    const r = await capture(['profile', '--decode', ...CASE, '--progressive', '0.95', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as DecodeProfileReport;
    expect(report.case).toMatchObject({ seq: 1024, heads: 8, kvHeads: 2, headDim: 64, pageSize: 32 });
    const plan = report.kernels.find((k) => k.name.startsWith('plan_kernel<'));
    const attention = report.kernels.find((k) => k.name.startsWith('split_attention_kernel<'));
    expect(plan).toBeDefined();
    expect(attention).toBeDefined();
    if (!plan || !attention) return;
    expect(plan.ctas).toBe(8);
    expect(plan.barriers).toBeGreaterThan(0);
    expect(plan.barriersPerCta).toBe(plan.barriers / plan.ctas);
    expect(plan.globalBytesRead).toBeGreaterThan(0);
    const s = report.stats;
    expect(s.pagesRead).toBeGreaterThan(2 * 5); // the window and the sinks' pages, and some chosen
    expect(s.pagesRead).toBeLessThan(s.pagesReadDense);
    expect(s.droppedMass.max).toBeGreaterThan(0);
    expect(s.droppedMass.max).toBeLessThanOrEqual(0.05 + 1e-6);
    // Full pages of 32 keys x 64 channels in 16 bits, keys and values: 8 KB per page read. Each
    // CTA reads its tile's 4 query rows once (128 B each). Contiguous and aligned: all sectors used.
    expect(attention.globalBytesRead).toBe(s.pagesRead * 2 * 32 * 64 * 2 + attention.ctas * 4 * 64 * 2);
    expect(attention.sectorEfficiency).toBe(1);
    // The estimates: per kv head, each of the 32 pages' sum and sum of squares (64 channels,
    // float32) once for the group's 4 rows, the 4 query rows and the 32 page-table entries.
    const estimates = report.kernels.find((k) => k.name.startsWith('page_estimates_kernel<'));
    expect(estimates).toBeDefined();
    if (!estimates) return;
    expect(estimates.ctas).toBe(2);
    expect(estimates.counters.globalLoad.bytesUsed).toBe(2 * (32 * 2 * 64 * 4 + 4 * 64 * 2 + 32 * 4));
    expect(report.call).toEqual({ syncs: 3, allocations: 0, frees: 0 });
  }, 120_000);

  test('the table names the step\'s kernels; ratio and progressive together: ERR_OPTION', async () => {
    const r = await capture(['profile', '--decode', ...CASE, '--ratio', '0.25']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    for (const k of ['plan_kernel<__half>', 'pages_read_kernel', 'split_attention_kernel<__half, 0>', 'lse_combine_kernel']) expect(r.out).toContain(k);
    expect(r.out).toMatch(/pages read \d+ of 64 /);
    expect(r.out).toMatch(/per call \(second of two\): 3 host syncs, 0 device allocations, 0 frees/);
    const both = await capture(['profile', '--decode', ...CASE, '--ratio', '0.25', '--progressive', '0.9']);
    expect(both.code).toBe(1);
    expect(both.err).toMatch(/^ERR_OPTION: .*progressive/);
  }, 120_000);

  test('options of the other mode, and a group that does not divide: coded errors', async () => {
    const topK = await capture(['profile', '--decode', '--top-k', '4']);
    expect(topK.code).toBe(1);
    expect(topK.err).toMatch(/^ERR_OPTION: .*--top-k/);
    const pageSize = await capture(['profile', '--page-size', '16']);
    expect(pageSize.code).toBe(1);
    expect(pageSize.err).toMatch(/^ERR_OPTION: .*--decode/);
    const group = await capture(['profile', '--decode', '--heads', '6', '--kv-heads', '4']);
    expect(group.code).toBe(1);
    expect(group.err).toMatch(/^ERR_SHAPE: .*kvHeads/);
  });
});
