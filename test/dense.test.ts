/** Dense attention (no sparse structure) against the float64 oracle, on every backend. */
import { forEachBackend } from './backends';
import type { ComputeType } from './backends';
import { randomQKV, ShapeLike } from './data';
import { compareWithOracle, inputsFor, runOn } from './harness';
import { OracleOptions } from './oracle';

forEachBackend('dense', (be) => {
  const check = async (shape: ShapeLike, opts: OracleOptions, seed: number, amp = 1, dtype?: ComputeType) => {
    const { r, want } = await compareWithOracle(be, shape, opts, randomQKV(shape, seed, amp), { dtype });
    expect(r.output.length).toBe(want.output.length);
    expect(r.stats.density).toBe(want.stats.allowedPairs ? 1 : 0);
    return { r, want };
  };
  const big = be.profile.budget.longSeq;
  describe('head dims x lengths x causal', () => {
    const cases: [number, number, boolean][] = [];
    for (const D of [1, 59, 64, 111, 128, 256]) for (const N of [1, 97]) for (const causal of [false, true]) cases.push([D, N, causal]);
    test.each(cases)('D=%i N=%i causal=%s', async (D, N, causal) => {
      await check({ batch: 1, heads: 2, kvHeads: 2, seqQ: N, seqK: N, headDim: D }, { causal }, D * 1000 + N);
    });
  });

  describe('long sequences, small heads', () => {
    test.each([
      [1, true, 'bhnd'],
      [8, false, 'bnhd'],
      [16, true, 'bnhd'],
      [64, true, 'bhnd'],
    ] as const)(`N=${big} D=%i causal=%s %s`, async (D, causal, layout) => {
      await check({ batch: 1, heads: 1, seqQ: big, seqK: big, headDim: D, layout }, { causal }, 77 + D);
    });
    test(`decode: Nq=1 against Nk=${big}, causal (the query sees every key)`, async () => {
      const { want } = await check({ batch: 2, heads: 2, kvHeads: 1, seqQ: 1, seqK: big, headDim: 32 }, { causal: true }, 5);
      expect(want.stats.keptPairs).toBe(2 * 2 * big);
    });
  });

  describe('Nq != Nk (bottom-right aligned causal)', () => {
    const cases: [number, number, boolean, 'bhnd' | 'bnhd'][] = [
      [97, 200, true, 'bhnd'],
      [97, 200, false, 'bnhd'],
      [200, 97, true, 'bnhd'],
      [200, 97, false, 'bhnd'],
      [130, 1, true, 'bhnd'],
      [1, 130, false, 'bhnd'],
      [65, 64, true, 'bhnd'],
      [64, 65, true, 'bnhd'],
    ];
    test.each(cases)('Nq=%i Nk=%i causal=%s %s', async (Nq, Nk, causal, layout) => {
      const shape = { batch: 2, heads: 2, kvHeads: 1, seqQ: Nq, seqK: Nk, headDim: 24, layout };
      const { r, want } = await check(shape, { causal }, Nq * 7 + Nk);
      if (causal && Nq > Nk) {
        // Rows i < Nq - Nk have no key: output 0, LSE -inf, counted as empty.
        const empty = Nq - Nk;
        expect(r.stats.emptyRows).toBe(2 * 2 * empty);
        for (let b = 0; b < 2; b++) {
          for (let h = 0; h < 2; h++) {
            for (let i = 0; i < Nq; i++) {
              const isEmpty = i < empty;
              expect(r.lse![(b * 2 + h) * Nq + i] === -Infinity).toBe(isEmpty);
              if (isEmpty) {
                const off = layout === 'bhnd' ? ((b * 2 + h) * Nq + i) * 24 : ((b * Nq + i) * 2 + h) * 24;
                for (let d = 0; d < 24; d++) expect(r.output[off + d]).toBe(0);
              }
            }
          }
        }
      } else {
        expect(r.stats.emptyRows).toBe(0);
      }
    });
  });

  describe('GQA and MQA, both memory layouts', () => {
    const cases: [number, number, 'bhnd' | 'bnhd', boolean][] = [];
    for (const [Hq, Hkv] of [[4, 4], [4, 1], [8, 2], [8, 1], [16, 2]]) for (const layout of ['bhnd', 'bnhd'] as const) cases.push([Hq, Hkv, layout, Hq !== 16]);
    test.each(cases)('Hq=%i Hkv=%i %s causal=%s', async (Hq, Hkv, layout, causal) => {
      await check({ batch: 2, heads: Hq, kvHeads: Hkv, seqQ: 45, seqK: 70, headDim: 40, layout }, { causal }, Hq * 31 + Hkv);
    });
    test('query head h reads kv head floor(h / (Hq/Hkv)): permuting kv heads changes the right heads', async () => {
      // Swap the two kv heads: query heads 0..3 and 4..7 must swap their outputs' sources.
      const shape = { batch: 1, heads: 8, kvHeads: 2, seqQ: 20, seqK: 20, headDim: 8 };
      const { q, k, v } = inputsFor(be, randomQKV(shape, 99));
      const half = 20 * 8;
      const swap = (a: Float32Array) => { const o = new Float32Array(a.length); o.set(a.subarray(half), 0); o.set(a.subarray(0, half), half); return o; };
      const a = await runOn(be, shape, {}, { q, k, v }, be.profile.dtypes[0]);
      const { r: b } = await compareWithOracle(be, shape, {}, { q, k: swap(k), v: swap(v) });
      let differs = false;
      for (let i = 0; i < a.output.length; i++) if (a.output[i] !== b.output[i]) differs = true;
      expect(differs).toBe(true);
    });
  });

  describe('scale and data range', () => {
    test.each([
      [0.01, 1],
      [1, 1],
      [0.125, 4],
      [2, 3],
    ])('scale=%f amp=%f', async (scale, amp) => {
      await check({ batch: 1, heads: 2, seqQ: 60, seqK: 60, headDim: 16 }, { causal: true, scale }, 12, amp);
    });
    test('globalTokens: 0 alone is dense', async () => {
      const { r, want } = await check({ batch: 1, heads: 1, seqQ: 50, seqK: 50, headDim: 8 }, { causal: true, globalTokens: 0 }, 3);
      expect(want.sparse).toBe(false);
      expect(r.stats.density).toBe(1);
    });
  });

  describe("every compute type of the backend's profile", () => {
    test.each([...be.profile.dtypes])('%s: head dim 59, Nq 97 != Nk 150, causal', async (dtype) => {
      await check({ batch: 1, heads: 2, kvHeads: 1, seqQ: 97, seqK: 150, headDim: 59 }, { causal: true }, 4, 1, dtype);
    });
  });
});
