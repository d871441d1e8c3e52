/** Block selection and layouts on every backend: the choice against the oracle's, flags, layouts passed back and moved between backends, fromSelection. */
import { attention, buildBlockLayout, BlockLayout, BLOCK_FULL, BLOCK_SELECTED } from '../lib/index';
import type { AttentionOptions } from '../lib/index';
import { forEachBackend, testIf } from './backends';
import { expectLayout, expectOutput, relFrob } from './compare';
import { randomArray, randomQKV, ShapeLike, sizes } from './data';
import { compareWithOracle, expectBuiltLayout, inputsFor, runOn } from './harness';
import { oracle, OracleOptions, oracleSelection, selectionOf } from './oracle';
import { outputTolerance } from './profiles';

const S = (seqQ: number, seqK: number, o: Partial<ShapeLike> = {}): ShapeLike => ({ batch: 1, heads: 4, kvHeads: 2, seqQ, seqK, headDim: 24, ...o });

type Config = [string, OracleOptions, ShapeLike];

/** Many small blocks. */
const configs: Config[] = [
  ['ratio 0.3 causal', { causal: true, blockSize: 16, blocks: { ratio: 0.3 } }, S(200, 200)],
  ['ratio 0.5 non-causal Nq<Nk', { causal: false, blockSize: 16, blocks: { ratio: 0.5 } }, S(90, 230)],
  ['topBlocks 3 + window + sinks', { causal: true, window: 20, globalTokens: 3, blockSize: 16, blocks: { topBlocks: 3 } }, S(220, 220)],
  ['progressive 0.8, min 2 max 6', { causal: true, blockSize: 16, blocks: { progressive: 0.8, minBlocks: 2, maxBlocks: 6 } }, S(230, 250, { batch: 2, heads: 2, kvHeads: 1 })],
  ['progressive 0.95 bound', { causal: false, blockSize: 32, blocks: { progressive: 0.95 }, estimate: 'bound' }, S(150, 260)],
  ['ratio 0.25 bound shared (GQA 4)', { causal: true, blockSize: 16, blocks: { ratio: 0.25 }, estimate: 'bound', shareAcrossGroup: true }, S(200, 200, { heads: 8, kvHeads: 2 })],
  ['progressive 0.6 mean shared (MQA) Nq>Nk', { causal: true, window: [5, 0], blockSize: 16, blocks: { progressive: 0.6 }, shareAcrossGroup: true }, S(210, 150, { heads: 4, kvHeads: 1 })],
  ['topBlocks 2 bnhd, non-causal [4, 9] window', { causal: false, window: [4, 9], blockSize: 16, blocks: { topBlocks: 2 } }, S(130, 170, { layout: 'bnhd' })],
];

/** Blocks at the device kernels' tile. */
const tileConfigs: Config[] = [
  ['ratio 0.3 causal (blockSize 64)', { causal: true, blocks: { ratio: 0.3 } }, S(400, 400, { heads: 2, kvHeads: 1 })],
  ['progressive 0.8 bound shared (GQA 2), non-causal Nq<Nk (blockSize 64)', { causal: false, blocks: { progressive: 0.8 }, estimate: 'bound', shareAcrossGroup: true }, S(260, 450, { heads: 2, kvHeads: 1 })],
  ['topBlocks 2 + window + sinks, bnhd (blockSize 128)', { causal: true, window: 40, globalTokens: 4, blockSize: 128, blocks: { topBlocks: 2 } }, S(300, 520, { heads: 2, kvHeads: 1, layout: 'bnhd' })],
];

describe('BlockLayout.fromSelection input checks', () => {
  test('out-of-range and causally empty blocks are rejected (ERR_OPTION)', () => {
    const geometry = { batch: 1, heads: 1, seqQ: 64, seqK: 64, blockSize: 16, causal: true, window: null, globalTokens: 0 };
    expect(() => BlockLayout.fromSelection(geometry, () => [4])).toThrow(expect.objectContaining({ code: 'ERR_OPTION' }));
    expect(() => BlockLayout.fromSelection(geometry, (_b, _h, I) => (I === 0 ? [1] : []))).toThrow(expect.objectContaining({ code: 'ERR_OPTION' }));
  });
});

forEachBackend('selection', (be) => {
  const B = be.name;
  const dtype = be.profile.dtypes[0];
  const each = (list: Config[], title: string, fn: (opts: OracleOptions, shape: ShapeLike) => Promise<void>) => {
    for (const [t, opts, shape] of list) testIf(be.cannot({ blockSize: opts.blockSize }), `${title}: ${t}`, () => fn(opts, shape));
  };

  describe("selected blocks match the oracle's (exactly, or within the profile's tolerance at the cut); FULL/SELECTED flags match the element-wise mask", () => {
    each([...configs, ...tileConfigs], 'built', async (opts, shape) => {
      const d = inputsFor(be, randomQKV(shape, 21));
      const built = await buildBlockLayout(d.q, d.k, { ...(opts as AttentionOptions), shape, backend: B, dtype });
      const want = expectBuiltLayout(be, built, d, shape, opts);
      // The layout attention reports is the one buildBlockLayout builds.
      const r = await runOn(be, shape, opts as AttentionOptions, d, dtype);
      expect(Array.from(r.layout!.offsets)).toEqual(Array.from(built.offsets));
      expect(Array.from(r.layout!.indices)).toEqual(Array.from(built.indices));
      expect(Array.from(r.layout!.flags)).toEqual(Array.from(built.flags));
      expectOutput(r.output, want, outputTolerance(be.profile, dtype));
      // Every flag is one of the two bits; CSR rows are ascending.
      expect(built.flags.every((f) => (f & ~(BLOCK_FULL | BLOCK_SELECTED)) === 0)).toBe(true);
      let ascending = true;
      for (let row = 0; row + 1 < built.offsets.length; row++) {
        for (let e = built.offsets[row] + 1; e < built.offsets[row + 1]; e++) if (!(built.indices[e] > built.indices[e - 1])) ascending = false;
      }
      expect(ascending).toBe(true);
    });
  });

  describe('ties in estimates go to the lower key block (exact ties in every precision)', () => {
    const bs = be.profile.blockSizes[0];
    test.each([
      [{ causal: false, blockSize: bs, blocks: { ratio: 0.25 } }],
      [{ causal: true, blockSize: bs, blocks: { topBlocks: 2 } }],
      [{ causal: false, blockSize: bs, blocks: { topBlocks: 3 }, estimate: 'bound' }],
    ] as [OracleOptions][])('%j', async (opts) => {
      // Every key block holds the same keys: all estimates tie exactly.
      const shape: ShapeLike = { batch: 1, heads: 2, kvHeads: 1, seqQ: 4 * bs, seqK: 8 * bs, headDim: 8 };
      const block = randomArray(bs * 8, 2);
      const k = new Float32Array(sizes(shape).kv);
      for (let J = 0; J < 8; J++) k.set(block, J * bs * 8);
      const d = inputsFor(be, { q: randomArray(sizes(shape).q, 1), k, v: k });
      const built = await buildBlockLayout(d.q, d.k, { ...(opts as AttentionOptions), shape, backend: B, dtype });
      const sel = oracleSelection(d.q, d.k, shape, opts);
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
    each([...configs.slice(0, 5), ...tileConfigs], 'passed back', async (opts, shape) => {
      const d = inputsFor(be, randomQKV(shape, 22));
      const r1 = await runOn(be, shape, { ...(opts as AttentionOptions), returnLse: true, returnThresholds: true, topK: 9 }, d, dtype);
      const { r: r2 } = await compareWithOracle(be, shape, { causal: opts.causal, topK: 9 }, d, { layout: r1.layout! });
      expect(relFrob(r2.output, r1.output)).toBeLessThanOrEqual(1e-7);
      expect(relFrob(r2.lse!.map((x) => (x === -Infinity ? 0 : x)), r1.lse!.map((x) => (x === -Infinity ? 0 : x)))).toBeLessThanOrEqual(1e-7);
      expect(r2.stats).toEqual(r1.stats);
    });
    const [reuseTitle, reuseOpts, reuseShape] = tileConfigs[2];
    test(`a built layout reused with other inputs of the same shape: oracle given that selection (${reuseTitle})`, async () => {
      const a = inputsFor(be, randomQKV(reuseShape, 23));
      const layout = await buildBlockLayout(a.q, a.k, { ...(reuseOpts as AttentionOptions), shape: reuseShape, backend: B, dtype });
      await compareWithOracle(be, reuseShape, { causal: true, softmax: 'poly', topKRatio: 0.5 }, 24, { layout });
    });
  });

  test("layouts move between backends: js's layout runs here, and this backend's own matches the oracle", async () => {
    const shape = S(260, 260, { heads: 2, kvHeads: 1, headDim: 32 });
    const d = inputsFor(be, randomQKV(shape, 21));
    const opts: OracleOptions = { causal: true, window: 32, globalTokens: 2, blocks: { ratio: 0.3 } };
    const jsLayout = await buildBlockLayout(d.q, d.k, { ...(opts as AttentionOptions), shape, backend: 'js' });
    const own = await buildBlockLayout(d.q, d.k, { ...(opts as AttentionOptions), shape, backend: B, dtype });
    expectBuiltLayout(be, own, d, shape, opts);
    await compareWithOracle(be, shape, { causal: true }, d, { layout: jsLayout });
  });

  describe('BlockLayout.fromSelection with hand-picked blocks', () => {
    const cases: [string, { causal: boolean; window: [number, number] | null; globalTokens: number; blockSize: number }, ShapeLike][] = [
      ['causal, no window or sinks', { causal: true, window: null, globalTokens: 0, blockSize: 16 }, S(100, 120, { batch: 1 })],
      ['causal, window [10, 0] + 2 sinks', { causal: true, window: [10, 0], globalTokens: 2, blockSize: 16 }, S(130, 100, { batch: 1 })],
      ['non-causal, window [3, 7]', { causal: false, window: [3, 7], globalTokens: 0, blockSize: 32, }, S(90, 150, { layout: 'bnhd', batch: 2 })],
      ['non-causal, window [20, 20] + 3 sinks (blockSize 64)', { causal: false, window: [20, 20], globalTokens: 3, blockSize: 64 }, S(200, 300)],
      ['causal, Nq > Nk (blockSize 128)', { causal: true, window: null, globalTokens: 0, blockSize: 128 }, S(400, 300, { layout: 'bnhd' })],
    ];
    for (const [title, g, shape] of cases) {
      testIf(be.cannot({ blockSize: g.blockSize }), title, async () => {
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
        // The layout against the oracle from the geometry alone (not from the layout's own fields).
        const d = inputsFor(be, randomQKV(shape, 25));
        expectLayout(layout, oracle(d.q, d.k, d.v, shape, { causal: g.causal, window: g.window ?? undefined, globalTokens: g.globalTokens, blockSize: bs, selected: chosen }));
        await compareWithOracle(be, shape, { causal: g.causal }, d, { layout });
        // JSON round trip keeps the layout.
        const back = BlockLayout.fromJSON(JSON.parse(JSON.stringify(layout)));
        expect(Array.from(back.indices)).toEqual(Array.from(layout.indices));
        expect(Array.from(back.flags)).toEqual(Array.from(layout.flags));
      });
    }
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
