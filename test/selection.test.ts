/** Block selection and layouts: the library's choice against the oracle's, flags, layouts passed back, fromSelection. */
import { attention, buildBlockLayout, BlockLayout, BLOCK_FULL, BLOCK_SELECTED } from '../lib/index';
import type { AttentionOptions } from '../lib/index';
import { forEachBackend } from './backends';
import { expectLayout, expectOutput, expectStats, relFrob } from './compare';
import { randomArray, randomQKV, ShapeLike, sizes } from './data';
import { oracle, OracleOptions, oracleSelection, optionsFromLayout, selectionOf } from './oracle';

const S = (seqQ: number, seqK: number, o: Partial<ShapeLike> = {}): ShapeLike => ({ batch: 1, heads: 4, kvHeads: 2, seqQ, seqK, headDim: 24, ...o });

const configs: [string, OracleOptions, ShapeLike][] = [
  ['ratio 0.3 causal', { causal: true, blockSize: 16, blocks: { ratio: 0.3 } }, S(200, 200)],
  ['ratio 0.5 non-causal Nq<Nk', { causal: false, blockSize: 16, blocks: { ratio: 0.5 } }, S(90, 230)],
  ['topBlocks 3 + window + sinks', { causal: true, window: 20, globalTokens: 3, blockSize: 16, blocks: { topBlocks: 3 } }, S(220, 220)],
  ['progressive 0.8, min 2 max 6', { causal: true, blockSize: 16, blocks: { progressive: 0.8, minBlocks: 2, maxBlocks: 6 } }, S(230, 250, { batch: 2, heads: 2, kvHeads: 1 })],
  ['progressive 0.95 bound', { causal: false, blockSize: 32, blocks: { progressive: 0.95 }, estimate: 'bound' }, S(150, 260)],
  ['ratio 0.25 bound shared (GQA 4)', { causal: true, blockSize: 16, blocks: { ratio: 0.25 }, estimate: 'bound', shareAcrossGroup: true }, S(200, 200, { heads: 8, kvHeads: 2 })],
  ['progressive 0.6 mean shared (MQA) Nq>Nk', { causal: true, window: [5, 0], blockSize: 16, blocks: { progressive: 0.6 }, shareAcrossGroup: true }, S(210, 150, { heads: 4, kvHeads: 1 })],
  ['topBlocks 2 bnhd, non-causal [4, 9] window', { causal: false, window: [4, 9], blockSize: 16, blocks: { topBlocks: 2 } }, S(130, 170, { layout: 'bnhd' })],
];

forEachBackend('selection', (be) => {
  const B = be.name as AttentionOptions['backend'];

  describe('selected blocks equal the oracle exactly; FULL/SELECTED flags match the element-wise mask', () => {
    test.each(configs)('%s', async (_t, opts, shape) => {
      const { q, k, v } = randomQKV(shape, 21);
      const built = await buildBlockLayout(q, k, { ...(opts as AttentionOptions), shape, backend: B });
      const sel = oracleSelection(q, k, shape, opts);
      expect(selectionOf(built)).toEqual(sel.selection);
      const want = oracle(q, k, v, shape, opts);
      expectLayout(built, want);
      // The layout attention reports is the one buildBlockLayout builds.
      const r = await attention(q, k, v, { ...(opts as AttentionOptions), shape, backend: B });
      expect(Array.from(r.layout!.offsets)).toEqual(Array.from(built.offsets));
      expect(Array.from(r.layout!.indices)).toEqual(Array.from(built.indices));
      expect(Array.from(r.layout!.flags)).toEqual(Array.from(built.flags));
      expectOutput(r.output, want);
      // Every flag is one of the two bits; CSR rows are ascending.
      expect(built.flags.every((f) => (f & ~(BLOCK_FULL | BLOCK_SELECTED)) === 0)).toBe(true);
      let ascending = true;
      for (let row = 0; row + 1 < built.offsets.length; row++) {
        for (let e = built.offsets[row] + 1; e < built.offsets[row + 1]; e++) if (!(built.indices[e] > built.indices[e - 1])) ascending = false;
      }
      expect(ascending).toBe(true);
    });
  });

  describe('ties in estimates go to the lower key block', () => {
    test.each([
      [{ causal: false, blockSize: 16, blocks: { ratio: 0.25 } }],
      [{ causal: true, blockSize: 16, blocks: { topBlocks: 2 } }],
      [{ causal: false, blockSize: 16, blocks: { topBlocks: 3 }, estimate: 'bound' }],
    ] as [OracleOptions][])('%j', async (opts) => {
      // Every key block holds the same keys: all estimates tie exactly.
      const shape: ShapeLike = { batch: 1, heads: 2, kvHeads: 1, seqQ: 64, seqK: 128, headDim: 8 };
      const q = randomArray(sizes(shape).q, 1);
      const block = randomArray(16 * 8, 2);
      const k = new Float32Array(sizes(shape).kv);
      for (let J = 0; J < 8; J++) k.set(block, J * 16 * 8);
      const built = await buildBlockLayout(q, k, { ...(opts as AttentionOptions), shape, backend: B });
      const sel = oracleSelection(q, k, shape, opts);
      expect(selectionOf(built)).toEqual(sel.selection);
      // The chosen blocks are the lowest candidates.
      for (let I = 0; I < 4; I++) {
        const c = sel.candidates[I];
        const got = built.selectedBlocks(0, 0, I);
        expect(got).toEqual(c.slice(0, got.length));
      }
    });
  });

  describe('a layout passed back gives the same result as the options that built it', () => {
    test.each(configs.slice(0, 5))('%s', async (_t, opts, shape) => {
      const { q, k, v } = randomQKV(shape, 22);
      const base = { shape, backend: B, returnLse: true, returnThresholds: true } as const;
      const r1 = await attention(q, k, v, { ...(opts as AttentionOptions), ...base, topK: 9 });
      const r2 = await attention(q, k, v, { ...base, causal: opts.causal, layout: r1.layout!, topK: 9 });
      expect(relFrob(r2.output, r1.output)).toBeLessThanOrEqual(1e-7);
      expect(relFrob(r2.lse!.map((x) => (x === -Infinity ? 0 : x)), r1.lse!.map((x) => (x === -Infinity ? 0 : x)))).toBeLessThanOrEqual(1e-7);
      expect(r2.stats).toEqual(r1.stats);
      const want = oracle(q, k, v, shape, { ...optionsFromLayout(r1.layout!), topK: 9 });
      expectOutput(r2.output, want);
      expectStats(r2.stats, want);
    });
    test('a built layout reused with other inputs of the same shape: oracle given that selection', async () => {
      const [, opts, shape] = configs[2];
      const a = randomQKV(shape, 23);
      const b = randomQKV(shape, 24);
      const layout = await buildBlockLayout(a.q, a.k, { ...(opts as AttentionOptions), shape, backend: B });
      const r = await attention(b.q, b.k, b.v, { shape, causal: true, layout, backend: B, softmax: 'poly', topKRatio: 0.5 });
      const want = oracle(b.q, b.k, b.v, shape, { ...optionsFromLayout(layout), softmax: 'poly', topKRatio: 0.5 });
      expectOutput(r.output, want);
      expectStats(r.stats, want);
    });
  });

  describe('BlockLayout.fromSelection with hand-picked blocks', () => {
    const cases: [string, { causal: boolean; window: [number, number] | null; globalTokens: number; blockSize: number }, ShapeLike][] = [
      ['causal, no window or sinks', { causal: true, window: null, globalTokens: 0, blockSize: 16 }, S(100, 120, { batch: 1 })],
      ['causal, window [10, 0] + 2 sinks', { causal: true, window: [10, 0], globalTokens: 2, blockSize: 16 }, S(130, 100, { batch: 1 })],
      ['non-causal, window [3, 7]', { causal: false, window: [3, 7], globalTokens: 0, blockSize: 32, }, S(90, 150, { layout: 'bnhd', batch: 2 })],
    ];
    test.each(cases)('%s', async (_t, g, shape) => {
      const geometry = { batch: shape.batch, heads: shape.heads, seqQ: shape.seqQ, seqK: shape.seqK!, ...g };
      const bs = g.blockSize;
      const nKB = Math.ceil(shape.seqK! / bs);
      const causallyNonEmpty = (I: number, J: number) => !g.causal || J * bs <= Math.min(shape.seqQ, (I + 1) * bs) - 1 + shape.seqK! - shape.seqQ;
      const pick = (b: number, h: number, I: number) => {
        const out: number[] = [];
        for (let J = 0; J < nKB; J++) if ((b + 2 * h + I + J) % 3 === 0 && causallyNonEmpty(I, J)) out.push(J);
        return out;
      };
      const layout = BlockLayout.fromSelection(geometry, pick);
      const chosen: number[][] = [];
      for (let b = 0; b < shape.batch; b++) for (let h = 0; h < shape.heads; h++) for (let I = 0; I < layout.numQueryBlocks; I++) chosen.push(pick(b, h, I));
      expect(selectionOf(layout)).toEqual(chosen);
      const oopts: OracleOptions = { causal: g.causal, window: g.window ?? undefined, globalTokens: g.globalTokens, blockSize: bs, selected: chosen };
      const { q, k, v } = randomQKV(shape, 25);
      const want = oracle(q, k, v, shape, oopts);
      expectLayout(layout, want);
      const r = await attention(q, k, v, { shape, causal: g.causal, layout, backend: B, returnLse: true });
      expectOutput(r.output, want);
      expectStats(r.stats, want);
      // JSON round trip keeps the layout.
      const back = BlockLayout.fromJSON(JSON.parse(JSON.stringify(layout)));
      expect(Array.from(back.indices)).toEqual(Array.from(layout.indices));
      expect(Array.from(back.flags)).toEqual(Array.from(layout.flags));
    });
    test('out-of-range and causally empty blocks are rejected (ERR_OPTION)', () => {
      const geometry = { batch: 1, heads: 1, seqQ: 64, seqK: 64, blockSize: 16, causal: true, window: null, globalTokens: 0 };
      expect(() => BlockLayout.fromSelection(geometry, () => [4])).toThrow(expect.objectContaining({ code: 'ERR_OPTION' }));
      expect(() => BlockLayout.fromSelection(geometry, (_b, _h, I) => (I === 0 ? [1] : []))).toThrow(expect.objectContaining({ code: 'ERR_OPTION' }));
    });
    test('a layout fixes the structure: window with layout is ERR_OPTION, other seqQ is ERR_SHAPE', async () => {
      const shape: ShapeLike = { batch: 1, heads: 1, seqQ: 64, seqK: 64, headDim: 4 };
      const geometry = { batch: 1, heads: 1, seqQ: 64, seqK: 64, blockSize: 16, causal: true, window: null, globalTokens: 0 };
      const layout = BlockLayout.fromSelection(geometry, (_b, _h, I) => [I]);
      const { q, k, v } = randomQKV(shape, 26);
      await expect(attention(q, k, v, { shape, causal: true, layout, window: 4, backend: B })).rejects.toMatchObject({ code: 'ERR_OPTION' });
      const s2 = { ...shape, seqQ: 32 };
      const d2 = randomQKV(s2, 27);
      await expect(attention(d2.q, d2.k, d2.v, { shape: s2, causal: true, layout, backend: B })).rejects.toMatchObject({ code: 'ERR_SHAPE' });
    });
  });
});
