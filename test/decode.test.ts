/**
 * Decode against a paged KvCache, and mergeAttention, against the float64 oracle of
 * test/decode-oracle.ts, on every backend with a decode (js with a host cache, cuda-emu and cuda
 * with a device cache): odd head dims, ragged sequences, GQA 1/4/8, m >= 1 queries, every
 * option alone and combined, the progressive rule with each estimate, the 'bound' certificate
 * on adversarial inputs, and the cache's own contract (pages, capacity, nothing half-appended).
 * A device cache rounds keys, values and queries to its dtype; the oracle gets the same values.
 */
import fc from 'fast-check';
import { DeviceStorage } from '../lib/backends/device-storage';
import { attention, decode, KvCache, mergeAttention, PsaError, Tensor } from '../lib/index';
import { loadAddon, loadEmuAddon, NativeAddon } from '../lib/native';
import type { DecodeOptions, DecodeResult, KvCacheOptions } from '../lib/index';
import { BackendUnderTest, describeIf, forEachBackend, testIf } from './backends';
import { expectOutput, relFrob } from './compare';
import { mulberry32, randomArray } from './data';
import { decodeOracle, DecodeOracleOptions, SequenceKV } from './decode-oracle';
import { outputTolerance } from './profiles';
import { roundTo } from './rounding';

/** Where a backend's decode cache lives and in what dtype. */
interface DecodeHome {
  be: BackendUnderTest;
  location: 'cpu' | 'cuda' | 'cuda-emu';
  dtype: 'float32' | 'float16' | 'bfloat16';
}

function homeOf(be: BackendUnderTest): DecodeHome | string {
  const d = be.profile.decode;
  if ('none' in d) return d.none;
  return { be, location: d.cache, dtype: be.profile.dtypes[0] };
}

const JS: DecodeHome = { be: { name: 'js' } as BackendUnderTest, location: 'cpu', dtype: 'float32' };

/** forEachBackend over the backends with a decode; the others register one skip with the reason. */
function forEachDecodeHome(title: string, body: (home: DecodeHome) => void): void {
  forEachBackend(title, (be) => {
    const home = homeOf(be);
    describeIf(typeof home === 'string' ? home : null, 'decode', () => body(home as DecodeHome));
  });
}

const cacheOptions = (home: DecodeHome, o: KvCacheOptions): KvCacheOptions => (home.location === 'cpu' ? o : { ...o, location: home.location, dtype: home.dtype as 'float16' });

interface Setup {
  cache: KvCache;
  /** The cache's content as the oracle reads it (rounded to the cache's dtype). */
  seqs: SequenceKV[];
  q: Float32Array;
  /** q rounded to the cache's dtype, for the oracle. */
  qo: Float32Array;
}

/** A cache filled in uneven chunks (so pages are written across appends), and q for the newest m tokens. */
async function setup(home: DecodeHome, lengths: number[], kvHeads: number, heads: number, D: number, m: number, pageSize: number, seed: number, amp = 1): Promise<Setup> {
  const cache = await KvCache.create(cacheOptions(home, { batch: lengths.length, kvHeads, headDim: D, capacity: Math.max(...lengths) + 5, pageSize }));
  const seqs: SequenceKV[] = lengths.map((L, s) => ({ k: randomArray(kvHeads * L * D, seed + 17 * s, amp), v: randomArray(kvHeads * L * D, seed + 31 * s + 1), length: L }));
  const rnd = mulberry32(seed);
  for (let s = 0; s < lengths.length; s++) {
    let at = 0;
    while (at < lengths[s]) {
      const n = Math.min(lengths[s] - at, 1 + Math.floor(rnd() * 40));
      const chunk = (x: Float32Array) => {
        const out = new Float32Array(kvHeads * n * D);
        for (let h = 0; h < kvHeads; h++) out.set(x.subarray((h * lengths[s] + at) * D, (h * lengths[s] + at + n) * D), h * n * D);
        return out;
      };
      await cache.append(chunk(seqs[s].k), chunk(seqs[s].v), { sequences: [s] });
      at += n;
    }
  }
  const q = randomArray(lengths.length * heads * m * D, seed + 999, amp);
  const r = (x: Float32Array) => roundTo(x, home.dtype);
  return { cache, seqs: seqs.map((x) => ({ ...x, k: r(x.k), v: r(x.v) })), q, qo: r(q) };
}

type Case = { lengths: number[]; kvHeads: number; heads: number; D: number; m: number; pageSize: number; options: Omit<DecodeOracleOptions, 'heads' | 'pageSize'> };

/** Output, LSE, kept pairs, pages and the estimated dropped mass against the oracle, within the home's tolerance. */
async function check(home: DecodeHome, c: Case, seed: number, amp = 1): Promise<{ r: DecodeResult; want: ReturnType<typeof decodeOracle> }> {
  const { cache, seqs, q, qo } = await setup(home, c.lengths, c.kvHeads, c.heads, c.D, c.m, c.pageSize, seed, amp);
  const r = await decode(q, cache, { ...(c.options as DecodeOptions), heads: c.heads, returnLse: true, returnPages: true, backend: home.be.name });
  const want = decodeOracle(qo, seqs, c.kvHeads, c.D, { ...c.options, heads: c.heads, pageSize: c.pageSize });
  const device = home.location !== 'cpu';
  expect(r.backend).toBe(home.be.name);
  expectOutput(r.output, { output: want.output } as never, device ? outputTolerance(home.be.profile, home.dtype) : 1e-5);
  const lseTol = device ? home.be.profile.lseTolerance : 2e-5;
  for (let i = 0; i < want.lse.length; i++) {
    const w = want.lse[i];
    if (w === -Infinity) expect(r.lse![i]).toBe(-Infinity);
    else expect(Math.abs(r.lse![i] - w)).toBeLessThanOrEqual(lseTol + 2e-6 * Math.abs(w));
  }
  expect(r.stats.keptPairs).toBe(want.keptPairs);
  expect(r.stats.allowedPairs).toBe(want.allowedPairs);
  expect(r.stats.pagesVisited).toBe(want.pagesVisited);
  expect(r.pages!.map((x) => Array.from(x))).toEqual(want.visited);
  expect(r.stats.emptyRows).toBe(want.emptyRows);
  const rows = want.estimatedDropped.length;
  // The device computes R / (Z + R) in float32.
  const digits = device ? 4 : 9;
  expect(r.stats.droppedMass.max).toBeCloseTo(Math.max(0, ...want.estimatedDropped), digits);
  expect(r.stats.droppedMass.mean).toBeCloseTo(want.estimatedDropped.reduce((a, b) => a + b, 0) / rows, digits);
  cache.dispose();
  return { r, want };
}


const base = (o: Partial<Case> = {}): Case => ({ lengths: [97, 1, 300], kvHeads: 2, heads: 4, D: 16, m: 1, pageSize: 32, options: {}, ...o });

forEachDecodeHome('decode against the oracle', (home) => {
  const device = home.location !== 'cpu';
  test.each([1, 59, 64, 111, 128, 256])('dense, head dim %i, ragged sequences', async (D) => {
    await check(home, base({ D, lengths: [97, 1, 130] }), D);
  });

  const alone: [string, Case][] = [
    ['window 40', base({ options: { window: 40 } })],
    ['window [50, 3] (right cut by causality)', base({ options: { window: [50, 3] } })],
    ['sinks 4', base({ options: { globalTokens: 4 } })],
    ['ratio 0.3 (moment)', base({ options: { blocks: { ratio: 0.3 } } })],
    ['topBlocks 2, mean', base({ options: { blocks: { topBlocks: 2 }, estimate: 'mean' } })],
    ['progressive 0.9, moment', base({ options: { blocks: { progressive: 0.9 } } })],
    ['progressive 0.9, mean', base({ options: { blocks: { progressive: 0.9 }, estimate: 'mean' } })],
    ['progressive 0.95, bound', base({ options: { blocks: { progressive: 0.95 }, estimate: 'bound' } })],
    ['progressive 0.99 with min 1 max 3', base({ options: { blocks: { progressive: 0.99, minBlocks: 1, maxBlocks: 3 } } })],
    ['progressive 0 and 1', base({ options: { blocks: { progressive: 0 } } })],
    ['progressive 1 (every page)', base({ options: { blocks: { progressive: 1 } } })],
    ['shared across a group of 4, progressive', base({ heads: 8, kvHeads: 2, options: { blocks: { progressive: 0.9 }, shareAcrossGroup: true } })],
    ['shared across a group, ratio, bound', base({ heads: 8, kvHeads: 1, options: { blocks: { ratio: 0.4 }, estimate: 'bound', shareAcrossGroup: true } })],
    ['topK 9', base({ options: { topK: 9 } })],
    ['topKRatio 0.2', base({ options: { topKRatio: 0.2 } })],
    ['poly softmax', base({ options: { softmax: 'poly' } })],
    ['m = 5 queries (speculative / chunked)', base({ m: 5, lengths: [97, 5, 300], options: { window: 20, blocks: { progressive: 0.9 } } })],
    ['page size 16, GQA 8 (MQA)', base({ pageSize: 16, heads: 8, kvHeads: 1, options: { blocks: { ratio: 0.25 } } })],
    ['page size 7 (not a power of two)', base({ pageSize: 7, options: { window: 9, blocks: { topBlocks: 3 } } })],
    ['scale 0.05', base({ options: { scale: 0.05, blocks: { progressive: 0.8 } } })],
  ];
  test.each(alone)('%s', async (_t, c) => {
    await check(home, c, 7);
  });

  test('combined: window + sinks + progressive + shared + topKRatio + poly, m 3, head dim 59', async () => {
    await check(home, base({ D: 59, m: 3, lengths: [200, 3, 64], heads: 8, kvHeads: 2, options: {
      window: 24, globalTokens: 2, blocks: { progressive: 0.85, minBlocks: 1 }, shareAcrossGroup: true, topKRatio: 0.5, softmax: { degree: 4 },
    } }), 11);
  });

  // Chunked prefill runs through decode (docs/decode.md#chunked-prefill): the chunk's m queries
  // are rows of the same plan and split-KV kernels, each with its own causal end and pages.
  test('chunked prefill: m 100 against a 300-token cache, GQA 4, dense', async () => {
    await check(home, base({ m: 100, lengths: [300], heads: 4, kvHeads: 1, D: 16 }), 13);
  });
  test('chunked prefill: m 32 against a 160-token cache, GQA 4, window + sinks + progressive 0.9', async () => {
    await check(home, base({ m: 32, lengths: [160], heads: 4, kvHeads: 1, D: 16, options: { window: 24, globalTokens: 2, blocks: { progressive: 0.9 } } }), 13);
  });

  test('a 1025-token sequence, D 64, progressive 0.95', async () => {
    await check(home, base({ lengths: [1025], heads: 4, kvHeads: 1, D: 64, options: { window: 64, globalTokens: 4, blocks: { progressive: 0.95 } } }), 5);
  });

  test('properties (seeded): random shapes and options', async () => {
    const arb = fc.record({
      lengths: fc.array(fc.integer({ min: 1, max: 150 }), { minLength: 1, maxLength: 3 }), group: fc.constantFrom(1, 2, 4), kvHeads: fc.constantFrom(1, 2),
      D: fc.constantFrom(1, 5, 16, 33), m: fc.integer({ min: 1, max: 4 }), pageSize: fc.constantFrom(4, 16, 32),
      window: fc.option(fc.integer({ min: 1, max: 60 }), { nil: undefined }), sinks: fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
      mode: fc.constantFrom('none', 'ratio', 'topBlocks', 'progressive'), value: fc.double({ min: 0, max: 1, noNaN: true }),
      estimate: fc.constantFrom('mean', 'bound', 'moment'), share: fc.boolean(),
      topK: fc.option(fc.integer({ min: 1, max: 30 }), { nil: undefined }), seed: fc.integer({ min: 1, max: 1e6 }),
    });
    await fc.assert(fc.asyncProperty(arb, async (c) => {
      const lengths = c.lengths.map((L) => Math.max(L, c.m));
      const blocks = c.mode === 'none' ? undefined : c.mode === 'topBlocks' ? { topBlocks: Math.round(c.value * 6) } : { [c.mode]: c.value };
      await check(home, {
        lengths, kvHeads: c.kvHeads, heads: c.kvHeads * c.group, D: c.D, m: c.m, pageSize: c.pageSize,
        options: { window: c.window, globalTokens: c.sinks, topK: c.topK, ...(blocks ? { blocks, estimate: c.estimate as 'mean', shareAcrossGroup: c.share } : {}) },
      }, c.seed);
    }), { seed: 20261201, numRuns: device ? 12 : 40 });
  });
});

describe("decode with m = 1 is attention with blockSize = pageSize on the sequence's keys", () => {
  test.each([
    ['ratio 0.3, mean', { blocks: { ratio: 0.3 }, estimate: 'mean' }],
    ['topBlocks 3, bound, window 40, sinks 2', { blocks: { topBlocks: 3 }, estimate: 'bound', window: 40, globalTokens: 2 }],
    ['topK 5 alone', { topK: 5 }],
  ] as const)('%s', async (_t, options) => {
    const L = 300;
    const { cache, seqs, q } = await setup(JS, [L], 1, 2, 16, 1, 32, 3);
    const r = await decode(q, cache, { ...(options as DecodeOptions), heads: 2 });
    const a = await attention(q, seqs[0].k, seqs[0].v, {
      ...(options as object), shape: { batch: 1, heads: 2, kvHeads: 1, seqQ: 1, seqK: L, headDim: 16 }, causal: true, blockSize: 32, backend: 'js',
    });
    expect(relFrob(r.output, a.output)).toBeLessThan(1e-6);
    expect(r.stats.keptPairs).toBe(a.stats.keptPairs);
  });
});

test('decode with m = 5 is attention with queryBlockSize 1 (selection per query row)', async () => {
  const L = 260;
  const m = 5;
  const { cache, seqs, q } = await setup(JS, [L], 2, 4, 16, m, 32, 8);
  for (const options of [{ blocks: { ratio: 0.3 }, estimate: 'moment' }, { blocks: { topBlocks: 2 }, estimate: 'bound', window: 30, globalTokens: 3, topK: 12 }] as const) {
    const r = await decode(q, cache, { ...(options as DecodeOptions), heads: 4 });
    const a = await attention(q, seqs[0].k, seqs[0].v, {
      ...(options as object), shape: { batch: 1, heads: 4, kvHeads: 2, seqQ: m, seqK: L, headDim: 16 }, causal: true, blockSize: 32, queryBlockSize: 1, backend: 'js',
    });
    expect(relFrob(r.output, a.output)).toBeLessThan(1e-6);
    expect(r.stats.keptPairs).toBe(a.stats.keptPairs);
    expect(a.layout!.numQueryBlocks).toBe(m);
  }
});

forEachDecodeHome("the 'bound' certificate: the exact dropped share is at most 1 - τ, and at most what stats report", (home) => {
  const adversarial: [string, (k: Float32Array, L: number, D: number) => void][] = [
    ['a needle: one key aligned with the query, far back', (k, _L, D) => { for (let d = 0; d < D; d++) k[40 * D + d] = 3; }],
    ['flat rows: every key the same', (k) => k.fill(0.5)],
    ['one huge key', (k, _L, D) => { for (let d = 0; d < D; d++) k[123 * D + d] = 40; }],
    ['alternating pages of strong and weak keys', (k, L, D) => { for (let j = 0; j < L; j++) for (let d = 0; d < D; d++) k[j * D + d] = Math.floor(j / 16) % 2 ? 1.5 : -1.5; }],
  ];
  test.each(adversarial)('%s', async (_t, plant) => {
    const L = 400;
    const D = 8;
    for (const tau of [0.5, 0.9, 0.99]) {
      const cache = await KvCache.create(cacheOptions(home, { batch: 1, kvHeads: 1, headDim: D, capacity: L, pageSize: 16 }));
      const k = randomArray(L * D, 5);
      const v = randomArray(L * D, 6);
      plant(k, L, D);
      await cache.append(k, v);
      const q = new Float32Array(D).fill(1);
      const options = { window: 16, blocks: { progressive: tau }, estimate: 'bound' as const };
      const r = await decode(q, cache, { ...options, heads: 1, backend: home.be.name });
      const want = decodeOracle(q, [{ k: roundTo(k, home.dtype), v: roundTo(v, home.dtype), length: L }], 1, D, { ...options, heads: 1, pageSize: 16 });
      const device = home.location !== 'cpu';
      expectOutput(r.output, { output: want.output } as never, device ? outputTolerance(home.be.profile, home.dtype) : 1e-5);
      // The device's float32 certificate is within float32 rounding of the oracle's.
      const slack = device ? 1e-5 : 1e-12;
      for (let row = 0; row < want.exactDropped.length; row++) {
        expect(want.exactDropped[row]).toBeLessThanOrEqual(1 - tau + slack);
        expect(want.exactDropped[row]).toBeLessThanOrEqual(r.stats.droppedMass.max + slack);
      }
      cache.dispose();
    }
  });
});

forEachDecodeHome('KvCache', (home) => {
  const mk = (o: Partial<KvCacheOptions> = {}) => KvCache.create({ ...cacheOptions(home, { batch: 3, kvHeads: 2, headDim: 4, capacity: 100, pageSize: 8 }), ...o });
  const tokens = (seqs: number, n: number, x = 1) => new Float32Array(seqs * 2 * n * 4).fill(x);

  test('sequences of independent lengths; free returns pages that the next append reuses', async () => {
    const c = await mk();
    await c.append(tokens(3, 5), tokens(3, 5));
    await c.append(tokens(1, 20), tokens(1, 20), { sequences: [1] });
    expect(c.lengths).toEqual([5, 25, 5]);
    expect(c.pagesUsed).toBe(1 + 4 + 1);
    c.free(1);
    expect(c.lengths).toEqual([5, 0, 5]);
    expect(c.pagesUsed).toBe(2);
    await c.append(tokens(2, 30), tokens(2, 30), { sequences: [2, 1] });
    expect(c.lengths).toEqual([5, 30, 35]);
    expect(c.pagesUsed).toBe(1 + 4 + 5);
  });

  test('decode after free and reuse reads the new keys, not the freed ones', async () => {
    const { cache, seqs, q, qo } = await setup(home, [50, 70], 1, 2, 8, 1, 8, 9);
    cache.free(0);
    const k = randomArray(60 * 8, 77);
    const v = randomArray(60 * 8, 78);
    await cache.append(k, v, { sequences: [0] });
    const r = await decode(q, cache, { heads: 2, blocks: { progressive: 0.9 }, backend: home.be.name });
    const want = decodeOracle(qo, [{ k: roundTo(k, home.dtype), v: roundTo(v, home.dtype), length: 60 }, seqs[1]], 1, 8, { heads: 2, pageSize: 8, blocks: { progressive: 0.9 } });
    expectOutput(r.output, { output: want.output } as never, home.location === 'cpu' ? 1e-5 : outputTolerance(home.be.profile, home.dtype));
  });

  test('past capacity or past the pool: ERR_OUT_OF_MEMORY and nothing appended', async () => {
    const c = await mk({ poolPages: 5 });
    await c.append(tokens(1, 30), tokens(1, 30), { sequences: [0] });
    const before = { lengths: c.lengths, pages: c.pagesUsed };
    await expect(c.append(tokens(2, 20), tokens(2, 20), { sequences: [1, 2] })).rejects.toMatchObject({ code: 'ERR_OUT_OF_MEMORY' });
    await expect(c.append(tokens(1, 71), tokens(1, 71), { sequences: [0] })).rejects.toMatchObject({ code: 'ERR_OUT_OF_MEMORY' });
    expect({ lengths: c.lengths, pages: c.pagesUsed }).toEqual(before);
  });

  test('wrong shapes, types, values and sequences: coded errors, nothing appended', async () => {
    const c = await mk();
    const bad: [() => Promise<void>, string, string][] = [
      [() => c.append(new Float32Array(7), new Float32Array(7)), 'ERR_SHAPE', 'k'],
      [() => c.append(tokens(3, 2), tokens(3, 3)), 'ERR_SHAPE', 'v'],
      [() => c.append(new Float64Array(48) as never, tokens(3, 2)), 'ERR_DTYPE', 'k'],
      [() => c.append(tokens(3, 2, NaN), tokens(3, 2)), 'ERR_VALUE', 'k'],
      [() => c.append(tokens(1, 2), tokens(1, 2), { sequences: [3] }), 'ERR_OPTION', 'options.sequences'],
      [() => c.append(tokens(2, 2), tokens(2, 2), { sequences: [1, 1] }), 'ERR_OPTION', 'options.sequences'],
    ];
    for (const [f, code, argument] of bad) await expect(f()).rejects.toMatchObject({ code, argument });
    expect(c.lengths).toEqual([0, 0, 0]);
    expect(c.pagesUsed).toBe(0);
  });

  test('create refuses bad options and absurd sizes with coded errors', async () => {
    await expect(mk({ headDim: 257 })).rejects.toMatchObject({ code: 'ERR_SHAPE', argument: 'headDim' });
    await expect(mk({ pageSize: 0 })).rejects.toMatchObject({ code: 'ERR_OPTION', argument: 'pageSize' });
    await expect(mk({ location: 'gpu' as never })).rejects.toMatchObject({ code: 'ERR_OPTION', argument: 'location' });
    await expect(mk({ batch: 2 ** 20, capacity: 2 ** 20 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_MEMORY' });
    await expect(mk({ dtype: home.location === 'cpu' ? 'float16' : 'float32' })).rejects.toMatchObject({ code: 'ERR_DTYPE', argument: 'dtype' });
    if (home.location !== 'cpu') await expect(mk({ pageSize: 129 })).rejects.toMatchObject({ code: 'ERR_OPTION', argument: 'pageSize' });
  });

  test('what the cache reports: location and dtype', async () => {
    const c = await mk();
    expect({ location: c.location, dtype: c.dtype }).toEqual({ location: home.location, dtype: home.dtype });
    c.dispose();
  });

  test('dispose: later use is ERR_DISPOSED; inputs are copied at append', async () => {
    const c = await mk();
    const k = tokens(3, 1, 2);
    await c.append(k, k);
    k.fill(NaN);
    const r = await decode(new Float32Array(3 * 2 * 4).fill(1), c, { heads: 2 });
    expect(r.output.every((x) => x === 2)).toBe(true);
    c[Symbol.dispose]();
    expect(c.disposed).toBe(true);
    expect(() => c.lengths).toThrow(expect.objectContaining({ code: 'ERR_DISPOSED' }));
    await expect(decode(new Float32Array(24), c, { heads: 2 })).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
  });
});

forEachDecodeHome('decode refuses what it cannot compute', (home) => {
  test('coded errors naming the argument', async () => {
    const { cache, q } = await setup(home, [10, 3], 1, 2, 4, 1, 4, 1);
    const elsewhere = home.location === 'cpu' ? 'cuda' : 'js';
    const bad: [() => Promise<unknown>, string, string][] = [
      [() => decode(q, cache, {}), 'ERR_OPTION', 'heads'],
      [() => decode(q, cache, { heads: 3 }), 'ERR_SHAPE', 'q'],
      [() => decode(new Float32Array(5), cache, { heads: 2 }), 'ERR_SHAPE', 'q'],
      [() => decode(new Float32Array(2 * 2 * 4 * 4), cache, { heads: 2 }), 'ERR_SHAPE', 'q'], // m = 4 > length 3
      [() => decode(q.map(() => NaN), cache, { heads: 2 }), 'ERR_VALUE', 'q'],
      [() => decode(q, cache, { heads: 2, backend: elsewhere }), 'ERR_OPTION', 'backend'],
      ...(home.location === 'cpu' ? [] : [[() => decode(q, cache, { heads: 2, backend: 'cpu' }), 'ERR_OPTION', 'backend'] as [() => Promise<unknown>, string, string]]),
      [() => decode(q, cache, { heads: 2, estimate: 'moment' }), 'ERR_OPTION', 'estimate'],
      [() => decode(q, cache, { heads: 2, blocks: { progressive: 2 } }), 'ERR_OPTION', 'blocks.progressive'],
      [() => decode(q, cache, { heads: 2, sequences: [0, 0] }), 'ERR_OPTION', 'sequences'],
      [() => decode(q, {} as never, { heads: 2 }), 'ERR_OPTION', 'cache'],
      [() => decode(q, cache, { heads: 2, bogus: 1 } as never), 'ERR_OPTION', 'options.bogus'],
    ];
    for (const [call, code, argument] of bad) {
      const e = await call().then(() => null, (x: unknown) => x);
      expect(e).toBeInstanceOf(PsaError);
      expect({ code: (e as PsaError).code, argument: (e as PsaError).argument }).toEqual({ code, argument });
    }
  });

  testIf(home.location === 'cpu' ? 'a host cache has no shared-memory limit' : null, 'pages the decode kernel cannot stage: ERR_OPTION naming backend, with the reason', async () => {
    const cache = await KvCache.create(cacheOptions(home, { batch: 1, kvHeads: 1, headDim: 256, capacity: 128, pageSize: 128 }));
    await cache.append(randomArray(128 * 256, 1), randomArray(128 * 256, 2));
    const e = await decode(randomArray(256, 3), cache, { heads: 1 }).then(() => null, (x: unknown) => x);
    expect({ code: (e as PsaError).code, argument: (e as PsaError).argument }).toEqual({ code: 'ERR_OPTION', argument: 'backend' });
    expect((e as Error).message).toMatch(/shared memory/);
    cache.dispose();
  });

  test('heads that are not a multiple of the cache kv heads: ERR_SHAPE naming heads', async () => {
    const { cache } = await setup(home, [10], 2, 2, 4, 1, 4, 1);
    await expect(decode(new Float32Array(12), cache, { heads: 3 })).rejects.toMatchObject({ code: 'ERR_SHAPE', argument: 'heads' });
  });

  test('a cpu Tensor q carries its dims', async () => {
    const { cache, seqs, q, qo } = await setup(home, [40], 1, 2, 4, 2, 8, 2);
    const r = await decode(Tensor.fromFloat32(q, [1, 2, 2, 4]), cache, { blocks: { ratio: 0.5 }, backend: home.be.name });
    const want = decodeOracle(qo, seqs, 1, 4, { heads: 2, pageSize: 8, blocks: { ratio: 0.5 } });
    expectOutput(r.output, { output: want.output } as never, home.location === 'cpu' ? 1e-5 : outputTolerance(home.be.profile, home.dtype));
  });
});

describe('mergeAttention', () => {
  test('two shards of the keys merge to attention over all of them', async () => {
    const shape = { batch: 1, heads: 2, seqQ: 5, seqK: 90, headDim: 8 };
    const q = randomArray(2 * 5 * 8, 1);
    const k = randomArray(2 * 90 * 8, 2);
    const v = randomArray(2 * 90 * 8, 3);
    const shard = (x: Float32Array, lo: number, hi: number) => {
      const out = new Float32Array(2 * (hi - lo) * 8);
      for (let h = 0; h < 2; h++) out.set(x.subarray((h * 90 + lo) * 8, (h * 90 + hi) * 8), h * (hi - lo) * 8);
      return out;
    };
    const part = async (lo: number, hi: number) => {
      const r = await attention(q, shard(k, lo, hi), shard(v, lo, hi), { shape: { ...shape, seqK: hi - lo }, returnLse: true, backend: 'js' });
      return { output: r.output, lse: r.lse! };
    };
    const full = await attention(q, k, v, { shape, returnLse: true, backend: 'js' });
    const merged = mergeAttention([await part(0, 37), await part(37, 90)]);
    expect(relFrob(merged.output, full.output)).toBeLessThan(1e-6);
    for (let i = 0; i < 10; i++) expect(merged.lse[i]).toBeCloseTo(full.lse![i], 5);
  });

  test('empty parts add nothing; rows empty everywhere give 0 and -inf', () => {
    const a = { output: Float32Array.of(1, 2, 3, 4), lse: Float32Array.of(0, -Infinity) };
    const b = { output: Float32Array.of(0, 0, 0, 0), lse: Float32Array.of(-Infinity, -Infinity) };
    const r = mergeAttention([a, b]);
    expect(Array.from(r.output)).toEqual([1, 2, 0, 0]);
    expect(Array.from(r.lse)).toEqual([0, -Infinity]);
  });

  test('bad parts: coded errors', () => {
    const ok = { output: new Float32Array(4), lse: new Float32Array(2) };
    const cases: [unknown, string, string][] = [
      [[], 'ERR_OPTION', 'parts'],
      [[ok, { output: new Float32Array(6), lse: new Float32Array(2) }], 'ERR_SHAPE', 'parts[1]'],
      [[{ output: [1, 2], lse: new Float32Array(1) }], 'ERR_SHAPE', 'parts[0].output'],
      [[ok, { output: new Float32Array(4), lse: Float32Array.of(NaN, 0) }], 'ERR_VALUE', 'parts[1].lse'],
      [[ok, { output: new Float32Array(4), lse: Float32Array.of(0, Infinity) }], 'ERR_VALUE', 'parts[1].lse'],
      [[ok, { output: Float32Array.of(0, 0, NaN, 0), lse: new Float32Array(2) }], 'ERR_VALUE', 'parts[1].output'],
      [[{ output: Float32Array.of(-Infinity, 0, 0, 0), lse: new Float32Array(2) }], 'ERR_VALUE', 'parts[0].output'],
    ];
    for (const [parts, code, argument] of cases) {
      let e: unknown;
      try {
        mergeAttention(parts as never);
      } catch (x) {
        e = x;
      }
      expect({ code: (e as PsaError).code, argument: (e as PsaError).argument }).toEqual({ code, argument });
    }
    expect(() => mergeAttention([ok], null as never)).toThrow(expect.objectContaining({ code: 'ERR_OPTION', argument: 'options' }));
    expect(() => mergeAttention([ok], { checkFinite: 1 as never })).toThrow(expect.objectContaining({ code: 'ERR_OPTION', argument: 'options.checkFinite' }));
  });

  test('checkFinite: false merges what it is given (a NaN output stays in its row)', () => {
    const r = mergeAttention([{ output: Float32Array.of(NaN, 1), lse: Float32Array.of(0, 0) }, { output: Float32Array.of(1, 1), lse: Float32Array.of(-Infinity, 0) }], { checkFinite: false });
    expect(Number.isNaN(r.output[0])).toBe(true);
    expect(r.output[1]).toBeCloseTo(1, 6);
  });
});

forEachDecodeHome('device tensors', (home) => {
  const device = home.location === 'cpu' ? 'a host cache takes Float32Arrays and cpu tensors' : null;
  const where = { location: home.location as 'cuda', type: 'float32' as const };

  testIf(device, 'mergeAttention on device parts runs the combine kernel: the host merge, on the device', async () => {
    const rows = 7;
    const D = 37;
    const parts = [0, 1, 2].map((p) => ({ output: randomArray(rows * D, 10 + p), lse: randomArray(rows, 20 + p, 30) }));
    const want = mergeAttention(parts);
    const uploaded = await Promise.all(parts.map(async (part) => ({
      output: await Tensor.upload(part.output, [1, 1, rows, D], where), lse: await Tensor.upload(part.lse, [1, 1, 1, rows], where),
    })));
    const got = await mergeAttention(uploaded);
    expect(got.output.location).toBe(home.location);
    expect(got.output.dims).toEqual([1, 1, rows, D]);
    expect(relFrob(await got.output.download(), want.output)).toBeLessThan(1e-6);
    const lse = await got.lse.download();
    for (let r = 0; r < rows; r++) expect(lse[r]).toBeCloseTo(want.lse[r], 5);
    const half = await Tensor.upload(parts[0].output, [1, 1, rows, D], { ...where, type: 'float16' });
    await expect(mergeAttention([{ output: half, lse: uploaded[0].lse }])).rejects.toMatchObject({ code: 'ERR_DTYPE', argument: 'parts[0].output' });
    await expect(mergeAttention([uploaded[0], { output: uploaded[1].output, lse: uploaded[1].output }])).rejects.toMatchObject({ code: 'ERR_SHAPE', argument: 'parts[1]' });
    // Values the upload would refuse, planted through the addon: a NaN LSE, an infinite output.
    const addon = (home.location === 'cuda' ? loadAddon() : loadEmuAddon()) as { loaded: true; addon: NativeAddon };
    const planted = async (data: Float32Array, dims: number[]) => new Tensor(new DeviceStorage(home.location as 'cuda', await addon.addon.upload(data, 'float32')), dims);
    const nanLse = await planted(Float32Array.from(parts[1].lse, (x, r) => (r === 3 ? NaN : x)), [1, 1, 1, rows]);
    const infOutput = await planted(Float32Array.from(parts[0].output, (x, i) => (i === 40 ? Infinity : x)), [1, 1, rows, D]);
    await expect(mergeAttention([uploaded[0], { output: uploaded[1].output, lse: nanLse }])).rejects.toMatchObject({ code: 'ERR_VALUE', argument: 'parts[1].lse' });
    await expect(mergeAttention([{ output: infOutput, lse: uploaded[0].lse }, uploaded[1]])).rejects.toMatchObject({ code: 'ERR_VALUE', argument: 'parts[0].output' });
    for (const t of [half, got.output, got.lse, nanLse, infOutput, ...uploaded.flatMap((u) => [u.output, u.lse])]) t.dispose();
  });

  testIf(device, 'append from device tensors (any dtype, rounded once to the cache dtype) equals append from host data', async () => {
    const L = 45;
    const D = 6;
    const k = randomArray(2 * L * D, 3);
    const v = randomArray(2 * L * D, 4);
    const a = await KvCache.create(cacheOptions(home, { batch: 1, kvHeads: 2, headDim: D, capacity: 64, pageSize: 16 }));
    const b = await KvCache.create(cacheOptions(home, { batch: 1, kvHeads: 2, headDim: D, capacity: 64, pageSize: 16 }));
    await a.append(k, v);
    for (const [type, lo, hi] of [['float32', 0, 20], ['float16', 20, 33], ['bfloat16', 33, L]] as const) {
      const slice = (x: Float32Array) => {
        const out = new Float32Array(2 * (hi - lo) * D);
        for (let h = 0; h < 2; h++) out.set(x.subarray((h * L + lo) * D, (h * L + hi) * D), h * (hi - lo) * D);
        return type === 'float32' ? out : roundTo(out, home.dtype);
      };
      const kt = await Tensor.upload(slice(k), [1, 2, hi - lo, D], { ...where, type: type === 'float32' ? 'float32' : home.dtype });
      const vt = await Tensor.upload(slice(v), [1, 2, hi - lo, D], { ...where, type: type === 'float32' ? 'float32' : home.dtype });
      const pending = b.append(kt, vt);
      kt.dispose(); // the append holds its own share
      vt.dispose();
      await pending;
    }
    const q = randomArray(4 * 3 * D, 5);
    const qt = await Tensor.upload(q, [1, 4, 3, D], where);
    for (const options of [{}, { window: 7, blocks: { progressive: 0.9 } }] as const) {
      const ra = await decode(q, a, { ...options, heads: 4, returnLse: true });
      const rb = await decode(qt, b, { ...options, returnLse: true });
      expect(Array.from(rb.output)).toEqual(Array.from(ra.output));
      expect(Array.from(rb.lse!)).toEqual(Array.from(ra.lse!));
    }
    qt.dispose();
    a.dispose();
    b.dispose();
  });

  testIf(device, 'a device append past the pool is ERR_OUT_OF_MEMORY and leaves the cache as it was', async () => {
    const c = await KvCache.create(cacheOptions(home, { batch: 2, kvHeads: 1, headDim: 4, capacity: 64, pageSize: 8, poolPages: 5 }));
    await c.append(new Float32Array(2 * 10 * 4).fill(1), new Float32Array(2 * 10 * 4).fill(1));
    await expect(c.append(new Float32Array(15 * 4).fill(2), new Float32Array(15 * 4).fill(2), { sequences: [0] })).rejects.toMatchObject({ code: 'ERR_OUT_OF_MEMORY' });
    expect({ lengths: c.lengths, pages: c.pagesUsed }).toEqual({ lengths: [10, 10], pages: 4 });
    await c.append(new Float32Array(6 * 4).fill(3), new Float32Array(6 * 4).fill(3), { sequences: [0] }); // fills its page: no new one
    const r = await decode(new Float32Array(4).fill(1), c, { heads: 1, sequences: [0] });
    // Scores 2 (ten keys of 1) and 6 (six keys of 3): the weighted mean of the values.
    const want = (10 * Math.exp(2) + 18 * Math.exp(6)) / (10 * Math.exp(2) + 6 * Math.exp(6));
    for (const x of r.output) expect(x).toBeCloseTo(want, 5);
    c.dispose();
  });
});

forEachBackend('a cpu decode step reads the cache as it was at the call', (be) => {
  const why = be.name === 'cpu' ? null : 'the cpu backend reads a host cache in place; the others copy or order their work';
  testIf(why, 'an append to a sequence it reads and a free with reuse while the step runs change nothing it computes', async () => {
    const D = 8;
    const ps = 8;
    const L = 100; // 12.5 pages: the last page of each sequence is partial
    const cache = await KvCache.create({ batch: 2, kvHeads: 1, headDim: D, capacity: 200, pageSize: ps, poolPages: 26 + 3 });
    const [k0, v0, k1, v1] = [1, 2, 3, 4].map((s) => randomArray(L * D, s));
    await cache.append(k0, v0, { sequences: [0] });
    await cache.append(k1, v1, { sequences: [1] });
    const q = randomArray(2 * 2 * D, 9, 3);
    const options: DecodeOptions = { heads: 2, blocks: { progressive: 0.9 }, backend: 'cpu', returnLse: true };
    const before = await decode(q, cache, options);
    const running = decode(q, cache, options);
    // While it runs: a key that would move the last page's metadata of sequence 0, and sequence
    // 1 freed and refilled (its old pages must not be the ones reused).
    await cache.append(new Float32Array(D).fill(50), new Float32Array(D).fill(50), { sequences: [0] });
    cache.free(1);
    await cache.append(randomArray(20 * D, 7, 50), randomArray(20 * D, 8, 50), { sequences: [1] });
    const during = await running;
    expect(Array.from(during.output)).toEqual(Array.from(before.output));
    expect(Array.from(during.lse!)).toEqual(Array.from(before.lse!));
    expect(during.stats).toEqual(before.stats);
    // Once it is done, the freed pages are back in the pool: 13 + 3 pages are in use.
    expect(cache.pagesUsed).toBe(13 + 3);
    cache.dispose();
  });
});
