/**
 * Calls that must compute from what they checked, values they must refuse, and answers they
 * must not invent: each case here returned a wrong number, hung or crashed before its fix.
 * Runs on every backend present; data is small integers and halves, exact in every compute
 * type, so a backend's answer to a clean call is its own reference.
 */
import { attention, buildBlockLayout, BlockLayout, info, PsaError, Tensor } from '../lib/index';
import type { AttentionOptions, AttentionResult } from '../lib/index';
import { forEachBackend } from './backends';
import { randomIntArray } from './data';
import { expectThrow } from './expect-error';

const shape = { batch: 1, heads: 2, kvHeads: 1, seqQ: 130, seqK: 130, headDim: 8 };
const data = () => ({ q: randomIntArray(2 * 130 * 8, 1, 1), k: randomIntArray(130 * 8, 2, 1), v: randomIntArray(130 * 8, 3, 2) });
const sparse: AttentionOptions = { shape, causal: true, window: 16, globalTokens: 2, blocks: { topBlocks: 1 }, returnLse: true };

function expectSame(a: AttentionResult<Float32Array>, b: AttentionResult<Float32Array>): void {
  expect(Array.from(a.output)).toEqual(Array.from(b.output));
  expect(Array.from(a.lse!)).toEqual(Array.from(b.lse!));
  expect(a.stats).toEqual(b.stats);
}

async function rejection(p: Promise<unknown>): Promise<PsaError> {
  const e = await p.then(() => null, (x: unknown) => x);
  expect(e).toBeInstanceOf(PsaError);
  return e as PsaError;
}

forEachBackend('defects', (be) => {
  const opts = (o: AttentionOptions = sparse): AttentionOptions => ({ ...o, backend: be.name });

  describe('a call computes from what it checked (inputs changed after it returns its promise)', () => {
    test('q, k and v filled with NaN', async () => {
      const d = data();
      const clean = await attention(d.q, d.k, d.v, opts());
      const pending = attention(d.q, d.k, d.v, opts());
      d.q.fill(NaN);
      d.k.fill(NaN);
      d.v.fill(NaN);
      expectSame(await pending, clean);
    });

    test("v's buffer transferred away", async () => {
      const d = data();
      const clean = await attention(d.q, d.k, d.v, opts());
      const pending = attention(d.q, d.k, d.v, opts());
      structuredClone(d.v.buffer, { transfer: [d.v.buffer as ArrayBuffer] });
      expect(d.v.length).toBe(0);
      expectSame(await pending, clean);
    });

    test('a passed layout overwritten: indices -1e5, offsets 2^30', async () => {
      const d = data();
      const layout = await buildBlockLayout(d.q, d.k, { shape, causal: true, window: 16, blocks: { topBlocks: 1 }, backend: 'js' });
      const clean = await attention(d.q, d.k, d.v, opts({ shape, layout, returnLse: true }));
      const pending = attention(d.q, d.k, d.v, opts({ shape, layout, returnLse: true }));
      layout.indices.fill(-1e5);
      layout.offsets.fill(2 ** 30, 1);
      const r = await pending;
      expectSame(r, clean);
      expect(r.layout).toBe(layout);
    });

    test('cpu Tensors: their data filled with NaN', async () => {
      const d = data();
      const t = (x: Float32Array, h: number) => Tensor.fromFloat32(x, [1, h, 130, 8]);
      const clean = await attention(t(d.q, 2), t(d.k, 1), t(d.v, 1), opts({ ...sparse, shape: undefined }));
      const [q, k, v] = [t(d.q, 2), t(d.k, 1), t(d.v, 1)];
      const pending = attention(q, k, v, opts({ ...sparse, shape: undefined }));
      d.q.fill(NaN);
      d.v.fill(NaN);
      const r = await pending;
      const toHost = async (x: Tensor) => (x.location === 'cpu' ? x.data : x.download());
      expect(Array.from(await toHost(r.output))).toEqual(Array.from(await toHost(clean.output)));
    });

    test('buildBlockLayout: k filled after the call', async () => {
      const d = data();
      const o = { shape, causal: true, blocks: { topBlocks: 1 }, backend: be.name } as AttentionOptions;
      const clean = await buildBlockLayout(d.q, d.k, o);
      const pending = buildBlockLayout(d.q, d.k, o);
      d.k.fill(-7);
      expect((await pending).toJSON()).toEqual(clean.toJSON());
    });
  });

  describe('values a call must refuse', () => {
    test('NaN inside a cpu Tensor: ERR_VALUE naming it', async () => {
      const d = data();
      d.k[77] = NaN;
      const e = await rejection(attention(Tensor.fromFloat32(d.q, [1, 2, 130, 8]), Tensor.fromFloat32(d.k, [1, 1, 130, 8]), Tensor.fromFloat32(d.v, [1, 1, 130, 8]), opts({ ...sparse, shape: undefined })));
      expect([e.code, e.argument]).toEqual(['ERR_VALUE', 'k']);
    });

    test('polynomial coefficients that are not usable in float32', async () => {
      const d = data();
      for (const coefficients of [[1e300, 1], [0, 0], [-1, 0], [1e38, 1e38, 1e38], [1, -2, 1]]) {
        const e = await rejection(attention(d.q, d.k, d.v, opts({ ...sparse, softmax: { coefficients } })));
        expect([e.code, e.argument]).toEqual(['ERR_OPTION', 'softmax.coefficients']);
      }
    });

    test('float16 range: a value above 65504 is refused where the call rounds to float16, kept elsewhere', async () => {
      const d = data();
      d.v[5] = 7e4;
      const dtypes = info().backends.find((b) => b.name === be.name)!.dtypes;
      for (const dtype of dtypes) {
        const call = attention(d.q, d.k, d.v, opts({ ...sparse, dtype }));
        if (dtype === 'float16') {
          const e = await rejection(call);
          expect([e.code, e.argument]).toEqual(['ERR_VALUE', 'v']);
        } else {
          expect((await call).output.every((x) => Number.isFinite(x))).toBe(true);
        }
      }
    });

    test('layouts built from plain arrays or Float64Arrays: ERR_OPTION naming the array', async () => {
      const d = data();
      const layout = await buildBlockLayout(d.q, d.k, { shape, causal: true, window: 16, backend: 'js' });
      const wrong = [
        new BlockLayout(layout.geometry, Array.from(layout.offsets) as unknown as Int32Array, layout.indices, layout.flags),
        new BlockLayout(layout.geometry, layout.offsets, Float64Array.from(layout.indices, (x) => x + 0.5) as unknown as Int32Array, layout.flags),
        new BlockLayout(layout.geometry, layout.offsets, layout.indices, Array.from(layout.flags) as unknown as Uint8Array),
      ];
      const names = ['layout.offsets', 'layout.indices', 'layout.flags'];
      for (let w = 0; w < wrong.length; w++) {
        const e = await rejection(attention(d.q, d.k, d.v, opts({ shape, layout: wrong[w] })));
        expect([e.code, e.argument]).toEqual(['ERR_OPTION', names[w]]);
      }
    });

    test('a layout missing a block its window reaches', async () => {
      const d = data();
      const layout = await buildBlockLayout(d.q, d.k, { shape, causal: true, window: 16, backend: 'js' });
      const offsets = layout.offsets.slice();
      for (let r = 1; r < offsets.length; r++) offsets[r] -= 1; // row 0 loses its only block
      const cut = new BlockLayout(layout.geometry, offsets, layout.indices.slice(1), layout.flags.slice(1));
      const e = await rejection(attention(d.q, d.k, d.v, opts({ shape, layout: cut })));
      expect([e.code, e.argument]).toEqual(['ERR_OPTION', 'layout']);
      expect(e.message).toMatch(/does not visit key block 0/);
    });
  });

  describe('answers a call must not invent', () => {
    test('a polynomial with c0 < 1 at scores 100 nats below the row maximum: finite, no NaN', async () => {
      // p(f) = 0.9 * (degree-3 fit of 2^f): c0 = 0.9. Key 0 scores 0, the rest about -100.
      const s = { batch: 1, heads: 1, seqQ: 1, seqK: 70, headDim: 1 };
      const q = Float32Array.of(1);
      const k = Float32Array.from({ length: 70 }, (_, j) => (j === 0 ? 0 : -100));
      const v = Float32Array.from({ length: 70 }, (_, j) => (j === 0 ? 1 : 2));
      const c = [0.9, 0.9 * 0.695146143436431884765625, 0.9 * 0.227564394474029541015625, 0.9 * 0.077119089663028717041015625];
      const r = await attention(q, k, v, { shape: s, scale: 1, softmax: { coefficients: c }, returnLse: true, backend: be.name });
      expect(Number.isFinite(r.output[0])).toBe(true);
      expect(Number.isFinite(r.lse![0])).toBe(true);
      // The 69 far keys weigh p * 2^-127 each against the maximum's p(0) = 0.9: output 1 + tiny.
      // Exactly 1 and ln 0.9 in float32; within the profile's tolerance where P is rounded to 16 bits.
      const tol = be.profile.tolerance[be.profile.dtypes[0]]!;
      expect(Math.abs(r.output[0] - 1)).toBeLessThanOrEqual(be.profile.dtypes[0] === 'float32' ? 0 : tol);
      expect(Math.abs(r.lse![0] - Math.log(0.9))).toBeLessThanOrEqual(be.profile.dtypes[0] === 'float32' ? 1e-6 : be.profile.lseTolerance);
    });

    test.each([true, false])('a window of 2^31 - 1 keeps every allowed pair (causal %s)', async (causal) => {
      const d = data();
      const r = await attention(d.q, d.k, d.v, opts({ shape, causal, window: 2 ** 31 - 1 }));
      expect(r.stats.keptPairs).toBe(r.stats.allowedPairs);
      expect(r.stats.density).toBe(1);
      const w = await attention(d.q, d.k, d.v, opts({ shape, causal, window: [2 ** 31 - 1, 2 ** 31 - 1] }));
      expect(w.stats.keptPairs).toBe(w.stats.allowedPairs);
    });
  });
});

describe('defects [backend js only: float32 semantics]', () => {
  test('checkFinite: false with a NaN query row gives NaN, not an empty row', async () => {
    const d = data();
    d.q.fill(NaN, 8 * 40, 8 * 41);
    const r = await attention(d.q, d.k, d.v, { shape, causal: true, checkFinite: false, returnLse: true, backend: 'js' });
    expect(r.stats.emptyRows).toBe(0);
    expect(Number.isNaN(r.output[8 * 40])).toBe(true);
    expect(Number.isNaN(r.lse![40])).toBe(true);
    expect(Number.isNaN(r.output[8 * 41])).toBe(false);
  });

});

describe('BlockLayout.fromJSON on untrusted JSON: structure and sizes first, every failure a PsaError', () => {
  const make = async () => {
    const d = data();
    return JSON.parse(JSON.stringify(await buildBlockLayout(d.q, d.k, { shape, causal: true, window: 16, globalTokens: 2, blockSize: 16, blocks: { ratio: 0.3 }, backend: 'js' })));
  };
  const cases: [string, (j: Record<string, unknown>) => unknown, string][] = [
    ['offsets [0, 2^53]', (j) => ({ ...j, offsets: [0, 2 ** 53] }), 'layout.offsets'],
    ['seqQ = seqK = 4e5 at blockSize 16 in a small JSON', (j) => ({ ...j, seqQ: 4e5, seqK: 4e5 }), 'layout.offsets'],
    ['offsets[last] = 1e9', (j) => ({ ...j, offsets: (j.offsets as number[]).map((x, i, a) => (i === a.length - 1 ? 1e9 : x)) }), 'layout.offsets'],
    ['offsets[1] = -5', (j) => ({ ...j, offsets: (j.offsets as number[]).map((x, i) => (i === 1 ? -5 : x)) }), 'layout.offsets'],
    ['offsets decreasing', (j) => ({ ...j, offsets: (j.offsets as number[]).map((x, i) => (i === 2 ? 0 : x)) }), 'layout'],
    ['window missing', ({ window: _w, ...rest }) => rest, 'layout.window'],
    ['huge geometry', (j) => ({ ...j, batch: 1e15 }), 'layout.batch'],
    ['indices not integers', (j) => ({ ...j, indices: (j.indices as number[]).map((x) => x + 0.5) }), 'layout.indices'],
    ['flags out of range', (j) => ({ ...j, flags: (j.flags as number[]).map(() => 9) }), 'layout.flags'],
  ];
  test.each(cases)('%s', async (_t, edit, argument) => {
    const j = await make();
    const t0 = Date.now();
    let err: unknown;
    try {
      BlockLayout.fromJSON(edit(j) as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PsaError);
    expect((err as PsaError).argument).toBe(argument);
    expect(Date.now() - t0).toBeLessThan(1000);
  });
  test('a valid JSON round-trips', async () => {
    const j = await make();
    expect(BlockLayout.fromJSON(j).toJSON()).toEqual(j);
    expectThrow(() => BlockLayout.fromJSON(null as never), PsaError, 'ERR_OPTION', 'layout');
  });
});
