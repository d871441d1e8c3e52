/** The floor of bench/decode-budget.ts: the fewest pages by exact mass, on a case whose answer is known. */
import { pageFloor } from '../bench/decode-floor';

describe('pageFloor', () => {
  // One head, head dim 1, q = 1 (scale 1): scores are the keys. 8 pages of 4 keys; the last key
  // (page 7) is the window, key 0 (page 0) the sink; page 3 holds a needle of score ln 100.
  const N = 32;
  const k = new Float32Array(N);
  k.fill(0);
  k[13] = Math.log(100);
  const q = new Float32Array(N).fill(1);
  const c = { q, k, heads: 1, seq: N, dim: 1, lengths: [N], window: 1, sinks: 1, pageSize: 4 };
  // Mass: sink 1 + window 1 + needle 100 + 29 other keys of 1 = 131.
  test('a needle: read it and the always-read pages, nothing else, while 1 - τ allows', () => {
    const f = pageFloor(c, 0.75); // 102 + 3 (the rest of page 3) = 105 of 131 kept: 80.2%
    expect(f.pagesRead).toBeCloseTo(3 / 8, 12);
    expect(f.droppedMax).toBeCloseTo(26 / 131, 6);
  });
  test('τ 1 reads every page and drops nothing', () => {
    const f = pageFloor(c, 1);
    expect(f.pagesRead).toBe(1);
    expect(f.droppedMean).toBeCloseTo(0, 12);
  });
  test('the dropped share never exceeds 1 - τ', () => {
    for (const tau of [0.5, 0.8, 0.9, 0.95, 0.99]) expect(pageFloor(c, tau).droppedMax).toBeLessThanOrEqual(1 - tau + 1e-12);
  });
});
