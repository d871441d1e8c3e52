/** The training example and its selection probe run end to end at a tiny size (learning itself is shown by the full run in the README); the selection recall they report is checked on a known layout. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BlockLayout } from '../lib';
import { selectionRecall } from '../examples/recall/selection-recall';
import type { Batch } from '../examples/recall/task';

const script = (name: string) => resolve(__dirname, '..', 'dist', 'examples', `${name}.js`);

test('examples/train-recall: both runs in lockstep, the held-out evaluation, JSON and plot', () => {
  const out = mkdtempSync(join(tmpdir(), 'psa-recall-'));
  const stdout = execFileSync(process.execPath, [script('train-recall'), '--steps', '6', '--seq', '160', '--queries', '32', '--batch', '1', '--eval-batch', '2', '--warmup', '0.34', '--ramp', '0.33', '--out', out], { encoding: 'utf8' });
  expect(stdout).toMatch(/6 steps per run, context 160/);
  expect(stdout).toMatch(/held-out batch of 2 sequences after 6 steps/);
  const r = JSON.parse(readFileSync(join(out, 'train-recall.json'), 'utf8'));
  expect(r.runs.dense).toHaveLength(6);
  expect(r.runs['progressive schedule']).toHaveLength(6);
  for (const s of r.runs['progressive schedule']) {
    expect(Number.isFinite(s.loss)).toBe(true);
    expect(s.forwardMs).toBeGreaterThan(0);
    expect(s.backwardMs).toBeGreaterThan(0);
    expect(s.selectionRecall).toBeGreaterThanOrEqual(0);
    expect(s.selectionRecall).toBeLessThanOrEqual(1);
    expect(['cpu', 'js']).toContain(s.forwardBackend);
  }
  // Dense for the first two steps (both runs the same), sparse from the ramp's end.
  expect(r.runs['progressive schedule'][0].loss).toBe(r.runs.dense[0].loss);
  expect(r.runs['progressive schedule'][5].density).toBeLessThan(1);
  expect(r.evaluations.dense).toMatchObject({ density: 1, selectionRecall: 1 });
  expect(r.evaluations['progressive schedule'].density).toBeLessThan(1);
  expect(readFileSync(join(out, 'train-recall.svg'), 'utf8')).toMatch(/^<svg/);
});

test('examples/recall-selection: one configuration of the probe', () => {
  const stdout = execFileSync(process.execPath, [script('recall-selection'), '--steps', '2', '--seq', '160', '--eval-batch', '1', '--batch', '1', '--block-sizes', '16', '--query-block-sizes', '1', '--estimates', 'bound', '--ratios', '0.5', '--taus', '', '--reps', '1'], { encoding: 'utf8' });
  expect(stdout).toMatch(/^dense\s+[\d.]+\s+-\s+[\d.]+$/m);
  expect(stdout).toMatch(/^\s+16\s+1\s+bound\s+ratio 0\.5\s+[\d.]+%\s+0\.\d+/m);
});

test('selectionRecall counts a query when its kept set allows the asked-for key', () => {
  // Queries 0..3 sit at positions 60..63 of 64 keys: a window of the 4 latest keys, 2 sinks,
  // and per row one selected block of 16.
  const geometry = { batch: 1, heads: 1, seqQ: 4, seqK: 64, blockSize: 16, queryBlockSize: 1, causal: true, window: [3, 0] as const, globalTokens: 2 };
  const layout = BlockLayout.fromSelection(geometry, (_b, _h, I) => [[0, 1, 2, 0][I]]);
  const none = new Int32Array(0);
  const batch = (answerAt: number[]): Batch => ({ sequences: 1, first: none, second: none, queryFirst: none, querySecond: none, target: none, answerAt: Int32Array.from(answerAt) });
  // Row 0: key 5 in its selected block. Row 1: key 1, a sink. Row 2: key 20, in block 1, not
  // selected. Row 3: key 55, in the window's block but not in the window.
  expect(selectionRecall(layout, batch([5, 1, 20, 55]), 4)).toBe(0.5);
  expect(selectionRecall(layout, batch([58, 18, 40, 63]), 4)).toBe(1); // window, selected, selected, window
  expect(selectionRecall(undefined, batch([5, 1, 20, 55]), 4)).toBe(1);
});
