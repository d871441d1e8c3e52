/** The decode scenario of `psa demo --decode`, at a small size: it must find the needle and read a fraction of the pages. */
import { main } from '../lib/cli';
import { runDecodeDemo } from '../lib/demo-decode';

test('runDecodeDemo: the needle page is read at every step, fewer pages than dense, little mass dropped', async () => {
  const seen: number[] = [];
  const r = await runDecodeDemo({ heads: 2, seq: 3000, dim: 16, steps: 3, onStep: (t) => seen.push(t) });
  expect(seen).toEqual([1, 2, 3]);
  expect(r.needleFoundSteps).toBe(3);
  expect(r.psa.pagesRead).toBeGreaterThan(0);
  expect(r.psa.pagesRead).toBeLessThan(0.6);
  expect(r.psa.droppedMax).toBeLessThanOrEqual(0.05 + 1e-9);
  expect(r.psa.relErrorMax).toBeLessThan(0.2);
});

test('psa demo --decode --json prints the report', async () => {
  const out: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((s: string) => (out.push(s), true)) as typeof process.stdout.write;
  try {
    expect(await main(['node', 'psa', 'demo', '--decode', '--json', '--seq', '800', '--steps', '2', '--heads', '1', '--dim', '8'])).toBe(0);
  } finally {
    process.stdout.write = write;
  }
  const report = JSON.parse(out.join(''));
  expect(report.steps).toBe(2);
  expect(report.context).toBe(800);
});
