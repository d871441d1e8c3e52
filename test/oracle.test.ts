/** The oracle itself, on hand-computed cases (so that agreement with it means something). */
import { ceilTol, offsetOf, oracle, oracleSelection, selectBlocks } from './oracle';

const F = (...x: number[]) => Float32Array.from(x);

describe('oracle on hand-computed cases', () => {
  test('softmax, output and LSE for two keys', () => {
    // s = [0, ln 2] (scale 1): P = [1/3, 2/3], LSE = ln 3.
    const r = oracle(F(1), F(0, Math.fround(Math.LN2)), F(3, 6), { batch: 1, heads: 1, seqQ: 1, seqK: 2, headDim: 1 }, { scale: 1 });
    expect(r.output[0]).toBeCloseTo(1 + 4, 6);
    expect(r.lse[0]).toBeCloseTo(Math.log(3), 6);
  });
  test('bottom-right causal alignment and empty rows', () => {
    // Nq = 2, Nk = 3: row 0 sits at 1 (keys 0, 1), row 1 at 2. Nq = 3, Nk = 1: rows 0, 1 empty.
    const a = oracle(F(0, 0), F(0, 0, 0), F(1, 2, 3), { batch: 1, heads: 1, seqQ: 2, seqK: 3, headDim: 1 }, { causal: true });
    expect(Array.from(a.output)).toEqual([1.5, 2]);
    const b = oracle(F(0, 0, 0), F(0), F(5), { batch: 1, heads: 1, seqQ: 3, seqK: 1, headDim: 1 }, { causal: true });
    expect(Array.from(b.output)).toEqual([0, 0, 5]);
    expect(Array.from(b.lse)).toEqual([-Infinity, -Infinity, 0]);
    expect(b.stats.emptyRows).toBe(2);
    expect(b.stats.density).toBe(1);
  });
  test('windows: w causal, w non-causal, [l, r]; sinks', () => {
    const s = { batch: 1, heads: 1, seqQ: 4, seqK: 4, headDim: 1 };
    const z = new Float32Array(4);
    expect(Array.from(oracle(z, z, z, s, { causal: true, window: 2 }).allowedCount)).toEqual([1, 2, 2, 2]);
    expect(Array.from(oracle(z, z, z, s, { causal: false, window: 2 }).allowedCount)).toEqual([2, 3, 3, 2]);
    expect(Array.from(oracle(z, z, z, s, { causal: false, window: [0, 2] }).allowedCount)).toEqual([3, 3, 2, 1]);
    expect(Array.from(oracle(z, z, z, s, { causal: true, globalTokens: 2 }).allowedCount)).toEqual([1, 2, 2, 2]);
    expect(Array.from(oracle(z, z, z, s, { causal: true, window: 1, globalTokens: 1 }).allowedCount)).toEqual([1, 2, 2, 2]);
  });
  test('top-k keeps ties; topKRatio counts with ceil', () => {
    const s = { batch: 1, heads: 1, seqQ: 1, seqK: 4, headDim: 1 };
    const r = oracle(F(1), F(1, 1, 0, -1), F(1, 1, 1, 1), s, { scale: 1, topK: 1 });
    expect(r.keptCount[0]).toBe(2);
    expect(r.thresholds[0]).toBe(1);
    expect(oracle(F(1), F(1, 2, 0, -1), F(1, 1, 1, 1), s, { scale: 1, topKRatio: 0.3 }).keptCount[0]).toBe(2);
    expect(oracle(F(1), F(1, 2, 0, -1), F(1, 1, 1, 1), s, { scale: 1, topK: 4 }).thresholds[0]).toBe(-Infinity);
    expect(ceilTol(0.14 * 50)).toBe(7);
    expect(Math.ceil(0.14 * 50)).toBe(8);
    expect(ceilTol(0.31 * 10)).toBe(4);
  });
  test('selection: the strong block wins; ratio, progressive, clamps', () => {
    const s = { batch: 1, heads: 1, seqQ: 16, seqK: 64, headDim: 1 };
    const k = new Float32Array(64).fill(0.1);
    k.fill(2, 32, 48);
    k.fill(1, 48, 64);
    const q = new Float32Array(16).fill(1);
    const sel = oracleSelection(q, k, s, { scale: 1, blockSize: 16, blocks: { topBlocks: 1 } });
    expect(sel.candidates[0]).toEqual([0, 1, 2, 3]);
    expect(sel.selection[0]).toEqual([2]);
    expect(oracleSelection(q, k, s, { scale: 1, blockSize: 16, blocks: { ratio: 0.5 } }).selection[0]).toEqual([2, 3]);
    // Weights 16 e^{-1.9} x2, 16, 16 e^{-1}: shares 0.090, 0.090, 0.600, 0.221; cumulative in order 2, 3, 0, 1: 0.600, 0.821, 0.910, 1.
    expect(selectBlocks([0, 1, 2, 3], Float64Array.from([0.1, 0.1, 2, 1]), { progressive: 0.5 }, 16, 64)).toEqual([2]);
    expect(selectBlocks([0, 1, 2, 3], Float64Array.from([0.1, 0.1, 2, 1]), { progressive: 0.7 }, 16, 64)).toEqual([2, 3]);
    expect(selectBlocks([0, 1, 2, 3], Float64Array.from([0.1, 0.1, 2, 1]), { progressive: 0.85 }, 16, 64)).toEqual([0, 2, 3]);
    expect(selectBlocks([0, 1, 2, 3], Float64Array.from([0.1, 0.1, 2, 1]), { progressive: 0.95 }, 16, 64)).toEqual([0, 1, 2, 3]);
    expect(selectBlocks([0, 1, 2, 3], Float64Array.from([0.1, 0.1, 2, 1]), { progressive: 0.7, maxBlocks: 1 }, 16, 64)).toEqual([2]);
    expect(selectBlocks([0, 1, 2, 3], Float64Array.from([0.1, 0.1, 2, 1]), { topBlocks: 1, minBlocks: 3 }, 16, 64)).toEqual([0, 2, 3]);
    expect(selectBlocks([0, 1], Float64Array.from([0.1, 0.1]), { topBlocks: 9 }, 16, 64)).toEqual([0, 1]);
    // Bound estimate: a block with one strong key beats one with a higher mean.
    const k2 = new Float32Array(64).fill(0);
    k2.fill(0.5, 0, 16);
    k2[20] = 4;
    expect(oracleSelection(q, k2, s, { scale: 1, blockSize: 16, blocks: { topBlocks: 1 } }).selection[0]).toEqual([0]);
    expect(oracleSelection(q, k2, s, { scale: 1, blockSize: 16, blocks: { topBlocks: 1 }, estimate: 'bound' }).selection[0]).toEqual([1]);
  });
  test('memory layouts', () => {
    expect(offsetOf('bhnd', 3, 5, 2, 1, 2, 4)).toBe(((1 * 3 + 2) * 5 + 4) * 2);
    expect(offsetOf('bnhd', 3, 5, 2, 1, 2, 4)).toBe(((1 * 5 + 4) * 3 + 2) * 2);
  });
});
