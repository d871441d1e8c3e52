/**
 * The cpu backend through the public API: layouts bit-identical to the JS reference's (every
 * selection mode and estimate, shared across GQA groups, both memory layouts), results that do
 * not depend on the thread count, inputs copied when the call is made, the event loop left
 * free, and `auto` choosing cpu before js. The numeric suites (dense, sparse, selection,
 * property) also run on cpu through test/backends.ts. Without the addon's cpu entry points
 * this suite skips saying why, except under CI=true, where that is a failure.
 */
import { attention, buildBlockLayout, info, Tensor } from '../../lib/index';
import type { AttentionOptions, AttentionShape } from '../../lib/types';
import { randomIntArray, randomQKV } from '../data';

const cpu = info().backends.find((b) => b.name === 'cpu')!;

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  return a.length === b.length && Array.prototype.every.call(a, (x: number, i: number) => Object.is(x, b[i]));
}

if (!cpu.available) {
  if (process.env.CI === 'true') test('the cpu backend is available', () => { throw new Error(cpu.reason); });
  else test.skip(`cpu backend: skipped because ${cpu.reason}`, () => {});
} else {
  test('psa info names the SIMD level and the default thread count', () => {
    expect(cpu.reason).toMatch(/\((avx512|avx2\+fma|portable)\), float32, \d+ threads by default/);
    expect(cpu.dtypes).toEqual(['float32']);
  });

  const shape: AttentionShape = { batch: 2, heads: 4, kvHeads: 2, seqQ: 300, seqK: 333, headDim: 40 };
  const layoutCases: [string, AttentionOptions][] = [
    ['window + sinks', { causal: true, window: 50, globalTokens: 3, blockSize: 32 }],
    ['ratio 0.3 mean', { causal: true, blocks: { ratio: 0.3 } }],
    ['ratio 0.5 bound, bnhd', { causal: false, blocks: { ratio: 0.5 }, estimate: 'bound', shape: { ...shape, layout: 'bnhd' } }],
    ['topBlocks 2 + window, shared', { causal: true, window: 40, blocks: { topBlocks: 2 }, shareAcrossGroup: true, blockSize: 16 }],
    ['progressive 0.9, min 1 max 3', { causal: true, blocks: { progressive: 0.9, minBlocks: 1, maxBlocks: 3 }, globalTokens: 1, blockSize: 48 }],
    ['progressive 0.7 bound shared', { causal: true, blocks: { progressive: 0.7 }, estimate: 'bound', shareAcrossGroup: true }],
    ['ratio 0.4 moment, bnhd', { causal: true, blocks: { ratio: 0.4 }, estimate: 'moment', shape: { ...shape, layout: 'bnhd' } }],
    ['progressive 0.8 moment shared', { causal: true, blocks: { progressive: 0.8 }, estimate: 'moment', shareAcrossGroup: true, blockSize: 48 }],
    ['query blocks of 1 row, topBlocks 3 + window', { causal: true, window: 30, blocks: { topBlocks: 3 }, queryBlockSize: 1, blockSize: 32 }],
    ['query blocks of 37 rows, ratio 0.3 bound', { causal: false, blocks: { ratio: 0.3 }, estimate: 'bound', queryBlockSize: 37 }],
    ['query blocks of 100 rows, moment, window + sinks', { causal: true, window: 64, globalTokens: 2, blocks: { ratio: 0.2 }, estimate: 'moment', queryBlockSize: 100, blockSize: 16 }],
  ];
  test.each(layoutCases)('layout bit-identical to the reference: %s', async (_name, options) => {
    const { q, k } = randomQKV(options.shape ?? shape, 11, 2);
    const opts = { shape, ...options };
    const mine = await buildBlockLayout(q, k, { ...opts, backend: 'cpu' });
    const ref = await buildBlockLayout(q, k, { ...opts, backend: 'js' });
    expect(mine.toJSON()).toEqual(ref.toJSON());
  });

  test('tied estimates rank like the reference (integer inputs)', async () => {
    const s: AttentionShape = { batch: 1, heads: 2, seqQ: 128, headDim: 8 };
    const q = randomIntArray(2 * 128 * 8, 3, 1);
    const k = randomIntArray(2 * 128 * 8, 4, 1);
    for (const blocks of [{ ratio: 0.25 }, { progressive: 0.5 }] as const) {
      const opts = { shape: s, causal: true, blockSize: 16, blocks };
      expect((await buildBlockLayout(q, k, { ...opts, backend: 'cpu' })).toJSON()).toEqual((await buildBlockLayout(q, k, { ...opts, backend: 'js' })).toJSON());
    }
  });

  test('results are bit-identical for 1, 2 and 5 threads', async () => {
    const s: AttentionShape = { batch: 1, heads: 3, seqQ: 257, seqK: 300, headDim: 64 };
    const { q, k, v } = randomQKV(s, 5, 2);
    const opts: AttentionOptions = { shape: s, causal: true, window: 64, blocks: { ratio: 0.3 }, topKRatio: 0.5, returnLse: true, returnThresholds: true, backend: 'cpu' };
    const runs = await Promise.all([1, 2, 5].map((threads) => attention(q, k, v, { ...opts, threads })));
    for (const r of runs.slice(1)) {
      expect(same(r.output, runs[0].output)).toBe(true);
      expect(same(r.lse!, runs[0].lse!)).toBe(true);
      expect(same(r.thresholds!, runs[0].thresholds!)).toBe(true);
      expect(r.stats).toEqual(runs[0].stats);
    }
  });

  test('the inputs are copied when the call is made', async () => {
    const s: AttentionShape = { batch: 1, heads: 2, seqQ: 200, headDim: 32 };
    const { q, k, v } = randomQKV(s, 6);
    const want = await attention(q, k, v, { shape: s, causal: true, backend: 'cpu' });
    const pending = attention(q, k, v, { shape: s, causal: true, backend: 'cpu' });
    q.fill(7);
    k.fill(-3);
    v.fill(0);
    expect(same((await pending).output, want.output)).toBe(true);
  });

  test('the event loop runs while the cpu computes', async () => {
    const s: AttentionShape = { batch: 1, heads: 4, seqQ: 768, headDim: 64 };
    const { q, k, v } = randomQKV(s, 7);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    await attention(q, k, v, { shape: s, causal: true, backend: 'cpu', threads: 1 });
    clearInterval(timer);
    if (performance.now() - t0 > 20) expect(ticks).toBeGreaterThan(0);
  });

  test('cpu Tensors in, a cpu Tensor out; auto picks cpu before js (with no CUDA)', async () => {
    const s: AttentionShape = { batch: 1, heads: 2, seqQ: 64, headDim: 16 };
    const { q, k, v } = randomQKV(s, 8);
    const dims = [1, 2, 64, 16];
    const r = await attention(Tensor.fromFloat32(q, dims), Tensor.fromFloat32(k, dims), Tensor.fromFloat32(v, dims), { causal: true, backend: 'cpu' });
    const ref = await attention(q, k, v, { shape: s, causal: true, backend: 'cpu' });
    expect(r.output.location).toBe('cpu');
    expect(same(r.output.data, ref.output)).toBe(true);
    if (!info().backends.find((b) => b.name === 'cuda')!.available) expect(info().autoBackend).toBe('cpu');
  });
}
