/** BlockLayout as an API: buildBlockLayout, inspection, JSON, fromSelection and its validation. */
import { attention, buildBlockLayout, BLOCK_FULL, BLOCK_SELECTED, BlockLayout, OptionError, PsaError, ShapeError } from '../lib';
import type { AttentionOptions, AttentionShape, LayoutGeometry, PsaErrorCode } from '../lib';
import { randomArray } from './data';
import { expectThrow } from './expect-error';

const shapeA: AttentionShape = { batch: 2, heads: 4, kvHeads: 2, seqQ: 70, seqK: 90, headDim: 8 };
function qkv(s: AttentionShape, seed = 1) {
  const nq = s.batch * s.heads * s.seqQ * s.headDim;
  const nk = s.batch * (s.kvHeads ?? s.heads) * (s.seqK ?? s.seqQ) * s.headDim;
  return { q: randomArray(nq, seed), k: randomArray(nk, seed + 1), v: randomArray(nk, seed + 2) };
}


const optionSets: [string, AttentionOptions][] = [
  ['window', { window: 9, blockSize: 16 }],
  ['window [l, r] causal', { window: [5, 3], blockSize: 16, causal: true }],
  ['sinks only', { globalTokens: 3, blockSize: 32 }],
  ['ratio, causal, default blockSize', { blocks: { ratio: 0.5 }, causal: true }],
  ['ratio with window and sinks', { blocks: { ratio: 0.3 }, window: 7, globalTokens: 2, blockSize: 16, causal: true }],
  ['topBlocks, bound estimate', { blocks: { topBlocks: 2 }, estimate: 'bound', blockSize: 16 }],
  ['progressive, shared across group', { blocks: { progressive: 0.8, minBlocks: 1, maxBlocks: 3 }, shareAcrossGroup: true, blockSize: 16, causal: true }],
  ['bnhd', { shape: { ...shapeA, layout: 'bnhd' }, blocks: { ratio: 0.5 }, window: 4, blockSize: 16 }],
];

describe('buildBlockLayout', () => {
  test.each(optionSets)('equals result.layout of attention with the same options (%s)', async (_name, o) => {
    const { q, k, v } = qkv(shapeA, 3);
    const options = { shape: shapeA, ...o } as AttentionOptions;
    const built = await buildBlockLayout(q, k, options);
    const r = await attention(q, k, v, options);
    expect(built).toBeInstanceOf(BlockLayout);
    expect(r.layout).toBeInstanceOf(BlockLayout);
    expect(built.toJSON()).toEqual(r.layout!.toJSON());
    expect(built.offsets).toEqual(r.layout!.offsets);
    expect(built.indices).toEqual(r.layout!.indices);
    expect(built.flags).toEqual(r.layout!.flags);
    // Passing it back gives the same attention.
    const again = await attention(q, k, v, { shape: options.shape, causal: options.causal, layout: built, returnLse: true });
    const direct = await attention(q, k, v, { ...options, returnLse: true });
    expect(again.output).toEqual(direct.output);
    expect(again.lse).toEqual(direct.lse);
    expect(again.stats).toEqual(direct.stats);
  });

  test.each(optionSets)('geometry matches the options (%s)', async (_name, o) => {
    const { q, k } = qkv(shapeA, 4);
    const options = { shape: shapeA, ...o } as AttentionOptions;
    const L = await buildBlockLayout(q, k, options);
    const bs = options.blockSize ?? 64;
    const causal = options.causal ?? false;
    expect(L.batch).toBe(shapeA.batch);
    expect(L.heads).toBe(shapeA.heads); // per query head, even when shared across a group
    expect(L.seqQ).toBe(shapeA.seqQ);
    expect(L.seqK).toBe(shapeA.seqK);
    expect(L.blockSize).toBe(bs);
    expect(L.causal).toBe(causal);
    expect(L.globalTokens).toBe(options.globalTokens ?? 0);
    const w = options.window;
    const want = w === undefined ? null : typeof w === 'number' ? (causal ? [w - 1, 0] : [w - 1, w - 1]) : [w[0], w[1]];
    expect(L.window === null ? null : [...L.window]).toEqual(want);
    expect(L.numQueryBlocks).toBe(Math.ceil(shapeA.seqQ / bs));
    expect(L.numKeyBlocks).toBe(Math.ceil(shapeA.seqK! / bs));
    expect(L.queryBlockSize).toBe(bs);
    expect(L.geometry).toEqual({ batch: L.batch, heads: L.heads, seqQ: L.seqQ, seqK: L.seqK, blockSize: L.blockSize, queryBlockSize: bs, causal: L.causal, window: L.window, globalTokens: L.globalTokens });
    // CSR well-formed
    const rows = L.batch * L.heads * L.numQueryBlocks;
    expect(L.offsets).toHaveLength(rows + 1);
    expect(L.offsets[0]).toBe(0);
    for (let r = 0; r < rows; r++) {
      expect(L.offsets[r + 1]).toBeGreaterThanOrEqual(L.offsets[r]);
      for (let e = L.offsets[r] + 1; e < L.offsets[r + 1]; e++) expect(L.indices[e]).toBeGreaterThan(L.indices[e - 1]);
    }
    expect(L.offsets[rows]).toBe(L.indices.length);
    expect(L.size).toBe(L.indices.length);
    expect(L.flags).toHaveLength(L.size);
    expect(L.indices.every((J) => J >= 0 && J < L.numKeyBlocks)).toBe(true);
    expect(L.flags.every((f) => (f & ~(BLOCK_FULL | BLOCK_SELECTED)) === 0)).toBe(true);
    // Selected blocks only where a selection was asked for.
    if (!options.blocks) expect(L.flags.some((f) => f & BLOCK_SELECTED)).toBe(false);
    expect(Object.isFrozen(L)).toBe(true);
  });

  test('shareAcrossGroup gives the same selection to every query head of a kv group', async () => {
    const { q, k } = qkv(shapeA, 5);
    const L = await buildBlockLayout(q, k, { shape: shapeA, blocks: { ratio: 0.4 }, shareAcrossGroup: true, blockSize: 16 });
    for (let b = 0; b < 2; b++) for (let I = 0; I < L.numQueryBlocks; I++) {
      expect(L.selectedBlocks(b, 0, I)).toEqual(L.selectedBlocks(b, 1, I));
      expect(L.selectedBlocks(b, 2, I)).toEqual(L.selectedBlocks(b, 3, I));
    }
  });

  test('dense options are ERR_OPTION', async () => {
    const { q, k } = qkv(shapeA);
    for (const o of [{}, { causal: true }, { globalTokens: 0 }, { blockSize: 32 }] as AttentionOptions[]) {
      const err = await buildBlockLayout(q, k, { shape: shapeA, ...o }).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(OptionError);
      expect((err as PsaError).code).toBe('ERR_OPTION');
    }
  });
});

describe('inspecting a layout', () => {
  let L: BlockLayout;
  beforeAll(async () => {
    const { q, k } = qkv(shapeA, 6);
    L = await buildBlockLayout(q, k, { shape: shapeA, blocks: { ratio: 0.5 }, window: 5, globalTokens: 1, blockSize: 16, causal: true });
  });

  test('blocksFor and selectedBlocks agree with the CSR arrays', () => {
    let total = 0;
    for (let b = 0; b < L.batch; b++) for (let h = 0; h < L.heads; h++) for (let I = 0; I < L.numQueryBlocks; I++) {
      const r = L.rowIndex(b, h, I);
      expect(r).toBe((b * L.heads + h) * L.numQueryBlocks + I);
      const list = L.blocksFor(b, h, I);
      expect(list.blocks).toBeInstanceOf(Int32Array);
      expect(Array.from(list.blocks)).toEqual(Array.from(L.indices.subarray(L.offsets[r], L.offsets[r + 1])));
      expect(list.full).toHaveLength(list.blocks.length);
      expect(list.selected).toHaveLength(list.blocks.length);
      list.blocks.forEach((J, n) => {
        const f = L.flags[L.offsets[r] + n];
        expect(list.full[n]).toBe((f & BLOCK_FULL) !== 0);
        expect(list.selected[n]).toBe((f & BLOCK_SELECTED) !== 0);
        // causal: a query block never sees key blocks past its last position
        expect(J * 16).toBeLessThanOrEqual(Math.min(L.seqQ, (I + 1) * 16) - 1 + L.seqK - L.seqQ);
      });
      expect(L.selectedBlocks(b, h, I)).toEqual(Array.from(list.blocks).filter((_J, n) => list.selected[n]));
      total += list.blocks.length;
    }
    expect(total).toBe(L.size);
    expect(L.flags.some((f) => f & BLOCK_SELECTED)).toBe(true);
  });

  test('blocksFor returns copies: changing them does not change the layout', () => {
    const list = L.blocksFor(0, 0, 2);
    const before = L.toJSON();
    list.blocks.fill(77);
    list.full.fill(false);
    expect(L.toJSON()).toEqual(before);
  });

  test.each([
    ['b = -1', [-1, 0, 0]], ['b = batch', [2, 0, 0]], ['h = heads', [0, 4, 0]], ['h = -1', [0, -1, 0]],
    ['I = numQueryBlocks', [0, 0, 5]], ['NaN', [0, NaN, 0]], ['Infinity', [Infinity, 0, 0]],
  ] as [string, [number, number, number]][])('rowIndex / blocksFor / selectedBlocks with %s are ERR_SHAPE', (_label, [b, h, I]) => {
    expectThrow(() => L.rowIndex(b, h, I), ShapeError, 'ERR_SHAPE', 'row');
    expectThrow(() => L.blocksFor(b, h, I), ShapeError, 'ERR_SHAPE', 'row');
    expectThrow(() => L.selectedBlocks(b, h, I), ShapeError, 'ERR_SHAPE', 'row');
  });

  test.each([
    ['b = 0.5', [0.5, 0, 0]], ['h = 1.5', [0, 1.5, 0]], ['I = 2.25', [0, 0, 2.25]],
  ] as [string, [number, number, number]][])('rowIndex with a fractional index (%s) is ERR_SHAPE', (_label, [b, h, I]) => {
    expectThrow(() => L.rowIndex(b, h, I), ShapeError, 'ERR_SHAPE', 'row');
    expectThrow(() => L.blocksFor(b, h, I), ShapeError, 'ERR_SHAPE', 'row');
  });
});

describe('toJSON / fromJSON', () => {
  test.each(optionSets)('round trip through JSON text (%s)', async (_name, o) => {
    const { q, k, v } = qkv(shapeA, 7);
    const options = { shape: shapeA, ...o } as AttentionOptions;
    const L = await buildBlockLayout(q, k, options);
    const json = L.toJSON() as Record<string, unknown>;
    for (const key of ['batch', 'heads', 'seqQ', 'seqK', 'blockSize', 'causal', 'window', 'globalTokens', 'offsets', 'indices', 'flags']) expect(json).toHaveProperty(key);
    const text = JSON.stringify(L);
    const back = BlockLayout.fromJSON(JSON.parse(text));
    expect(back).toBeInstanceOf(BlockLayout);
    expect(back.toJSON()).toEqual(L.toJSON());
    expect(JSON.stringify(back)).toBe(text);
    const a = await attention(q, k, v, { shape: options.shape, layout: back });
    const b = await attention(q, k, v, { shape: options.shape, layout: L });
    expect(a.output).toEqual(b.output);
  });

  test('JSON whose blocks disagree with its geometry is ERR_OPTION', async () => {
    const { q, k } = qkv(shapeA, 8);
    const L = await buildBlockLayout(q, k, { shape: shapeA, window: 4, blockSize: 16 });
    const j = JSON.parse(JSON.stringify(L));
    // Claim a window-only block that the window does not reach (no SELECTED flag).
    const bad = { ...j, indices: [...j.indices] };
    bad.indices[0] = 4;
    expectThrow(() => BlockLayout.fromJSON(bad), OptionError, 'ERR_OPTION', 'layout');
    // Too few rows.
    expectThrow(() => BlockLayout.fromJSON({ ...j, offsets: j.offsets.slice(0, -1) }), PsaError, 'ERR_OPTION', 'layout.offsets');
    // Bad geometry.
    expectThrow(() => BlockLayout.fromJSON({ ...j, batch: 0 }), ShapeError, 'ERR_SHAPE', 'layout.batch');
    expectThrow(() => BlockLayout.fromJSON({ ...j, globalTokens: -1 }), OptionError, 'ERR_OPTION', 'layout.globalTokens');
  });

  test.each([
    ['null', null],
    ['offsets missing', 'no-offsets'],
    ['indices a string', 'indices-string'],
  ] as const)('malformed JSON (%s) is a PsaError, not a TypeError', async (_label, kind) => {
    const { q, k } = qkv(shapeA, 9);
    const j = JSON.parse(JSON.stringify(await buildBlockLayout(q, k, { shape: shapeA, window: 4, blockSize: 16 })));
    const input = kind === null ? null : kind === 'no-offsets' ? { ...j, offsets: undefined } : { ...j, indices: 'x' };
    let err: unknown;
    try {
      BlockLayout.fromJSON(input as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PsaError);
  });
});

describe('BlockLayout.fromSelection', () => {
  const geometry: LayoutGeometry = { batch: 1, heads: 2, seqQ: 64, seqK: 64, blockSize: 16, causal: true, window: [3, 0], globalTokens: 2 };

  test('no selection equals the window/sink layout buildBlockLayout makes', async () => {
    const s = { batch: 1, heads: 2, seqQ: 64, seqK: 64, headDim: 4 };
    const { q, k } = qkv(s, 10);
    const built = await buildBlockLayout(q, k, { shape: s, window: 4, globalTokens: 2, blockSize: 16, causal: true });
    const mine = BlockLayout.fromSelection(geometry, () => []);
    expect(mine.toJSON()).toEqual(built.toJSON());
  });

  test('selected blocks are added, flagged SELECTED, and attention uses them', async () => {
    const L = BlockLayout.fromSelection(geometry, (_b, h, I) => (h === 0 && I === 3 ? [1] : []));
    expect(L.selectedBlocks(0, 0, 3)).toEqual([1]);
    expect(L.selectedBlocks(0, 1, 3)).toEqual([]);
    const list = L.blocksFor(0, 0, 3);
    const n = Array.from(list.blocks).indexOf(1);
    expect(list.selected[n]).toBe(true);
    expect(list.full[n]).toBe(true); // a strictly-past block of a causal layout is fully allowed
    const s = { batch: 1, heads: 2, seqQ: 64, seqK: 64, headDim: 4 };
    const { q, k, v } = qkv(s, 11);
    const plain = await attention(q, k, v, { shape: s, layout: BlockLayout.fromSelection(geometry, () => []) });
    const more = await attention(q, k, v, { shape: s, layout: L });
    expect(more.stats.keptPairs - plain.stats.keptPairs).toBe(16 * 16);
    // Only head 0, rows 48..63 change.
    const D = 4;
    const head1 = (o: Float32Array) => Array.from(o.subarray(64 * D));
    expect(head1(more.output)).toEqual(head1(plain.output));
    expect(Array.from(more.output.subarray(0, 48 * D))).toEqual(Array.from(plain.output.subarray(0, 48 * D)));
  });

  test.each([
    ['past the last key block', 4], ['negative', -1], ['fractional', 1.5], ['NaN', NaN],
  ] as [string, number][])('a block %s is ERR_OPTION', (_label, J) => {
    expectThrow(() => BlockLayout.fromSelection(geometry, () => [J]), OptionError, 'ERR_OPTION', 'layout');
  });

  test('a causally empty block (the future) is ERR_OPTION', () => {
    expectThrow(() => BlockLayout.fromSelection(geometry, (_b, _h, I) => (I === 0 ? [1] : [])), OptionError, 'ERR_OPTION', 'layout');
    expectThrow(() => BlockLayout.fromSelection(geometry, (_b, _h, I) => (I === 2 ? [3] : [])), OptionError, 'ERR_OPTION', 'layout');
    // Not causal: the same block is fine.
    expect(() => BlockLayout.fromSelection({ ...geometry, causal: false }, (_b, _h, I) => (I === 0 ? [1] : []))).not.toThrow();
  });

  test('a repeated block is listed once', () => {
    const L = BlockLayout.fromSelection({ ...geometry, window: null, globalTokens: 0 }, (_b, _h, I) => (I === 3 ? [1, 1, 0] : []));
    expect(Array.from(L.blocksFor(0, 0, 3).blocks)).toEqual([0, 1]);
  });

  test.each([
    ['batch 0', { batch: 0 }, ShapeError, 'ERR_SHAPE', 'layout.batch'],
    ['heads 1.5', { heads: 1.5 }, ShapeError, 'ERR_SHAPE', 'layout.heads'],
    ['seqQ NaN', { seqQ: NaN }, ShapeError, 'ERR_SHAPE', 'layout.seqQ'],
    ['seqK -4', { seqK: -4 }, ShapeError, 'ERR_SHAPE', 'layout.seqK'],
    ['blockSize 0', { blockSize: 0 }, ShapeError, 'ERR_SHAPE', 'layout.blockSize'],
    ['globalTokens -1', { globalTokens: -1 }, OptionError, 'ERR_OPTION', 'layout.globalTokens'],
    ['window [-1, 0]', { window: [-1, 0] }, OptionError, 'ERR_OPTION', 'layout.window'],
    ['window [0, 0.5]', { window: [0, 0.5] }, OptionError, 'ERR_OPTION', 'layout.window'],
  ] as [string, Partial<LayoutGeometry>, new (...a: never[]) => PsaError, PsaErrorCode, string][])('geometry with %s is refused', (_label, change, cls, code, arg) => {
    expectThrow(() => BlockLayout.fromSelection({ ...geometry, ...change }, () => []), cls, code, arg);
  });

  test.each([7, 8, 24, 512])('geometry blockSize %i (not a multiple of 16 in 16..256) is refused', (blockSize) => {
    let err: unknown;
    try {
      BlockLayout.fromSelection({ ...geometry, blockSize }, () => []);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PsaError);
    expect(['ERR_OPTION', 'ERR_SHAPE']).toContain((err as PsaError).code);
  });

  test('geometry causal that is not a boolean is refused', () => {
    let err: unknown;
    try {
      BlockLayout.fromSelection({ ...geometry, causal: 'yes' as never }, () => []);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PsaError);
  });
});
