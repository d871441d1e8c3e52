/**
 * queryBlockSize (selection and layouts per query block of any size; 1 = per query row) and the
 * 'moment' estimate, against the float64 oracle. Backends whose kernels select per query block
 * of blockSize rows, or do not compute 'moment', must refuse with ERR_OPTION naming backend.
 */
import { attention, buildBlockLayout, BlockLayout, PsaError } from '../lib/index';
import type { AttentionOptions } from '../lib/index';
import { forEachBackend, testIf } from './backends';
import { compareWithOracle } from './harness';
import { randomQKV, ShapeLike } from './data';
import type { OracleOptions } from './oracle';

const S = (seqQ: number, seqK: number, o: Partial<ShapeLike> = {}): ShapeLike => ({ batch: 1, heads: 2, kvHeads: 1, seqQ, seqK, headDim: 16, ...o });

const cases: [string, ShapeLike, OracleOptions][] = [
  ['queryBlockSize 1, ratio 0.3', S(40, 200), { causal: true, blockSize: 32, queryBlockSize: 1, blocks: { ratio: 0.3 } }],
  ['queryBlockSize 1, progressive 0.9, window, sinks', S(33, 160), { causal: true, blockSize: 16, queryBlockSize: 1, window: 20, globalTokens: 2, blocks: { progressive: 0.9 } }],
  ['queryBlockSize 7 (not a divisor), topBlocks 2, bound', S(50, 130), { causal: false, blockSize: 32, queryBlockSize: 7, blocks: { topBlocks: 2 }, estimate: 'bound' }],
  ['queryBlockSize 128 > blockSize 32, shared across a group of 4', S(150, 150, { heads: 4 }), { causal: true, blockSize: 32, queryBlockSize: 128, blocks: { ratio: 0.4 }, shareAcrossGroup: true }],
  ['moment, ratio 0.25', S(200, 200), { causal: true, blockSize: 32, blocks: { ratio: 0.25 }, estimate: 'moment' }],
  ['moment, blockSize 64, ratio 0.4, GQA 2, bnhd', S(300, 330, { heads: 4, kvHeads: 2, layout: 'bnhd' }), { causal: true, blockSize: 64, blocks: { ratio: 0.4 }, estimate: 'moment' }],
  ['moment, blockSize 64, progressive 0.9, shared across the group, window, sinks', S(260, 260, { heads: 4 }), { causal: true, blockSize: 64, window: 40, globalTokens: 4, blocks: { progressive: 0.9 }, estimate: 'moment', shareAcrossGroup: true }],
  ['moment, progressive 0.8, queryBlockSize 1, topK 9, poly', S(30, 180), { causal: true, blockSize: 16, queryBlockSize: 1, blocks: { progressive: 0.8 }, estimate: 'moment', topK: 9, softmax: 'poly' }],
];

forEachBackend('query blocks and the moment estimate', (be) => {
  const needs = (o: OracleOptions) => be.cannot({ blockSize: o.blockSize, queryBlockSize: o.queryBlockSize, estimate: o.estimate, softmax: o.softmax });
  for (const [title, shape, opts] of cases) {
    testIf(needs(opts), title, async () => {
      await compareWithOracle(be, shape, opts, 5);
    });
  }
  // What the profile says the backend cannot run, it must refuse before any work, naming backend.
  const declined: [string, AttentionOptions][] = [
    ['queryBlockSize 1', { blockSize: 64, queryBlockSize: 1, window: 8, causal: true }],
    ["estimate 'moment'", { blockSize: 64, blocks: { ratio: 0.5 }, estimate: 'moment' }],
    ['a degree-2 polynomial', { softmax: { degree: 2 } }],
  ];
  for (const [title, options] of declined) {
    const why = be.cannot({ blockSize: options.blockSize, queryBlockSize: options.queryBlockSize, estimate: options.estimate, softmax: options.softmax as OracleOptions['softmax'] });
    testIf(why === null ? 'the profile runs it' : null, `${title} is refused with ERR_OPTION naming backend`, async () => {
      const shape = S(70, 70);
      const { q, k, v } = randomQKV(shape, 1);
      const e = await attention(q, k, v, { ...options, shape, backend: be.name }).then(() => null, (x: unknown) => x);
      expect(e).toBeInstanceOf(PsaError);
      expect({ code: (e as PsaError).code, argument: (e as PsaError).argument }).toEqual({ code: 'ERR_OPTION', argument: 'backend' });
    });
  }
});

describe('queryBlockSize in layouts [backend js]', () => {
  test('a layout of per-row query blocks round-trips through JSON and runs as a passed layout', async () => {
    const shape = S(20, 100);
    const { q, k, v } = randomQKV(shape, 3);
    const options = { shape, causal: true, blockSize: 16, queryBlockSize: 1, blocks: { topBlocks: 1 }, backend: 'js' } as AttentionOptions;
    const L = await buildBlockLayout(q, k, options);
    expect(L.queryBlockSize).toBe(1);
    expect(L.numQueryBlocks).toBe(20);
    const back = BlockLayout.fromJSON(JSON.parse(JSON.stringify(L)));
    expect(back.queryBlockSize).toBe(1);
    const a = await attention(q, k, v, { shape, layout: back, backend: 'js' });
    const b = await attention(q, k, v, options);
    expect(Array.from(a.output)).toEqual(Array.from(b.output));
  });

  test('JSON without queryBlockSize (older layouts) reads as queryBlockSize = blockSize', async () => {
    const shape = S(64, 64);
    const { q, k } = randomQKV(shape, 4);
    const L = await buildBlockLayout(q, k, { shape, causal: true, blockSize: 16, window: 8, backend: 'js' });
    const { queryBlockSize: _drop, ...old } = JSON.parse(JSON.stringify(L));
    expect(BlockLayout.fromJSON(old).queryBlockSize).toBe(16);
  });

  test('bad values: ERR_OPTION naming queryBlockSize', async () => {
    const shape = S(8, 8);
    const x = new Float32Array(2 * 8 * 16);
    const y = new Float32Array(8 * 16);
    for (const bad of [0, 257, 1.5, '4']) {
      await expect(attention(x, y, y, { shape, window: 4, queryBlockSize: bad as number, backend: 'js' })).rejects.toMatchObject({ code: 'ERR_OPTION', argument: 'queryBlockSize' });
    }
  });
});
