/** `npm run bench -- decode` on a tiny context: it runs, and what it writes agrees with itself. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeBench } from '../bench/decode';

test('bench decode writes its table and plots', async () => {
  const out = mkdtempSync(join(tmpdir(), 'psa-bench-decode-'));
  const write = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    await decodeBench(['--lengths', '700,1500', '--heads', '2', '--dim', '16', '--runs', '1', '--backend', 'js', '--out', out]);
    const r = JSON.parse(readFileSync(join(out, 'decode.json'), 'utf8'));
    expect(r.rows).toHaveLength(2 * 5);
    for (const row of r.rows) {
      expect(row.pagesRead).toBeGreaterThan(0);
      expect(row.pagesRead).toBeLessThanOrEqual(1);
      if (row.variant === 'dense') expect([row.pagesRead, row.droppedMax]).toEqual([1, 0]);
      else expect(row.droppedMax).toBeLessThan(1);
    }
    expect(readFileSync(join(out, 'decode.svg'), 'utf8')).toContain('<polyline');
    expect(readFileSync(join(out, 'decode-pages.svg'), 'utf8')).toContain('<polyline');
  } finally {
    write.mockRestore();
    rmSync(out, { recursive: true, force: true });
  }
});
