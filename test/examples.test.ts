/** The training example runs end to end at a tiny size and writes its results (learning itself is shown by the full run in the README). */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

test('examples/train-recall: both runs, JSON and plot', () => {
  const out = mkdtempSync(join(tmpdir(), 'psa-recall-'));
  const script = resolve(__dirname, '..', 'dist', 'examples', 'train-recall.js');
  const stdout = execFileSync(process.execPath, [script, '--steps', '4', '--seq', '160', '--queries', '32', '--batch', '1', '--out', out], { encoding: 'utf8' });
  expect(stdout).toMatch(/dense: 4 steps/);
  expect(stdout).toMatch(/progressive schedule: 4 steps/);
  const r = JSON.parse(readFileSync(join(out, 'train-recall.json'), 'utf8'));
  expect(r.runs.dense).toHaveLength(4);
  for (const s of r.runs['progressive schedule']) {
    expect(Number.isFinite(s.loss)).toBe(true);
    expect(s.attentionMs).toBeGreaterThan(0);
    expect(['cpu', 'js']).toContain(s.forwardBackend);
  }
  expect(readFileSync(join(out, 'train-recall.svg'), 'utf8')).toMatch(/^<svg/);
});
