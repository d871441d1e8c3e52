/** Tensor: construction checks, the handle's properties, attention on cpu Tensors, and dispose(). */
import { attention, DisposedError, DtypeError, PsaError, ShapeError, Tensor, ValueError } from '../lib';
import type { AttentionOptions, PsaErrorCode } from '../lib';
import { checkRawValues, checkValues, OVERFLOW_BOUND } from '../lib/finite';
import { checkTensorFinite } from '../lib/tensor';
import { randomArray } from './data';
import { expectThrow } from './expect-error';
import { halfBitsToFloat, roundBf16, toHalfBits } from './rounding';


async function expectReject(p: Promise<unknown>, cls: new (...a: never[]) => PsaError, code: PsaErrorCode, argument?: string | readonly string[]): Promise<void> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(cls);
  expect((err as PsaError).code).toBe(code);
  if (typeof argument === 'string') expect((err as PsaError).argument).toBe(argument);
  else if (argument) expect(argument).toContain((err as PsaError).argument);
}

const B = 2, H = 4, HKV = 2, NQ = 19, NK = 23, D = 8;
function host(seed = 1) {
  return { q: randomArray(B * H * NQ * D, seed), k: randomArray(B * HKV * NK * D, seed + 1), v: randomArray(B * HKV * NK * D, seed + 2) };
}
function tensors(seed = 1, layout: 'bhnd' | 'bnhd' = 'bhnd') {
  const { q, k, v } = host(seed);
  const dq = layout === 'bhnd' ? [B, H, NQ, D] : [B, NQ, H, D];
  const dk = layout === 'bhnd' ? [B, HKV, NK, D] : [B, NK, HKV, D];
  return { q: Tensor.fromFloat32(q, dq), k: Tensor.fromFloat32(k, dk), v: Tensor.fromFloat32(v, dk), host: { q, k, v } };
}
const SHAPE = { batch: B, heads: H, kvHeads: HKV, seqQ: NQ, seqK: NK, headDim: D };

describe('Tensor.fromFloat32', () => {
  test('a cpu float32 tensor over the data, without a copy', () => {
    const data = randomArray(24, 1);
    const t = Tensor.fromFloat32(data, [1, 2, 3, 4]);
    expect(t.type).toBe('float32');
    expect(t.location).toBe('cpu');
    expect(t.dims).toEqual([1, 2, 3, 4]);
    expect(t.size).toBe(24);
    expect(t.disposed).toBe(false);
    expect(t.data).toBe(data);
    data[0] = 42;
    expect(t.data[0]).toBe(42);
  });

  test('dims are copied and frozen', () => {
    const dims = [1, 2, 3, 4];
    const t = Tensor.fromFloat32(new Float32Array(24), dims);
    dims[0] = 7;
    expect(t.dims).toEqual([1, 2, 3, 4]);
    expect(Object.isFrozen(t.dims)).toBe(true);
    expect(() => {
      (t.dims as number[])[0] = 9;
    }).toThrow();
  });

  test.each([
    ['3 dims', [2, 3, 4]],
    ['5 dims', [1, 1, 2, 3, 4]],
    ['no dims', []],
    ['a zero', [1, 0, 3, 4]],
    ['a negative', [1, -2, 3, 4]],
    ['a fraction', [1, 2, 3.5, 4]],
    ['NaN', [1, 2, NaN, 4]],
    ['Infinity', [1, 2, Infinity, 4]],
    ['a string', [1, 2, '3', 4]],
    ['not an array', '1,2,3,4'],
    ['null', null],
    ['undefined', undefined],
  ] as [string, unknown][])('dims with %s are ERR_SHAPE', (_label, dims) => {
    expectThrow(() => Tensor.fromFloat32(new Float32Array(24), dims as number[]), ShapeError, 'ERR_SHAPE', 'dims');
  });

  test('data length must equal the product of dims', () => {
    expectThrow(() => Tensor.fromFloat32(new Float32Array(23), [1, 2, 3, 4]), ShapeError, 'ERR_SHAPE', 'data');
    expectThrow(() => Tensor.fromFloat32(new Float32Array(25), [1, 2, 3, 4]), ShapeError, 'ERR_SHAPE', 'data');
    const detached = new Float32Array(24);
    structuredClone(detached, { transfer: [detached.buffer] });
    expectThrow(() => Tensor.fromFloat32(detached, [1, 2, 3, 4]), ShapeError, 'ERR_SHAPE', 'data');
  });

  test.each([
    ['Float64Array', new Float64Array(24)],
    ['Uint16Array', new Uint16Array(24)],
    ['Int32Array', new Int32Array(24)],
    ['plain array', new Array(24).fill(0)],
    ['ArrayBuffer', new ArrayBuffer(96)],
    ['null', null],
    ['a number', 24],
  ] as [string, unknown][])('data as %s is ERR_DTYPE', (_label, data) => {
    expectThrow(() => Tensor.fromFloat32(data as Float32Array, [1, 2, 3, 4]), DtypeError, 'ERR_DTYPE', 'data');
  });
});

describe('Tensor.upload (no usable device here is fine: it must then reject with a reason)', () => {
  test('bad dims and dtypes reject before any device is touched', async () => {
    await expectReject(Tensor.upload(new Float32Array(24), [2, 3, 4]), ShapeError, 'ERR_SHAPE', 'dims');
    await expectReject(Tensor.upload(new Float64Array(24) as never, [1, 2, 3, 4]), DtypeError, 'ERR_DTYPE', 'data');
    await expectReject(Tensor.upload(new Float32Array(23), [1, 2, 3, 4]), ShapeError, 'ERR_SHAPE', 'data');
    await expectReject(Tensor.upload(new Uint16Array(24), [1, 2, 3, 4]), DtypeError, 'ERR_DTYPE', 'options.type');
    await expectReject(Tensor.upload(new Uint16Array(24), [1, 2, 3, 4], { type: 'float32' }), DtypeError, 'ERR_DTYPE', 'options.type');
    await expectReject(Tensor.upload(new Float32Array(24), [1, 2, 3, 4], { type: 'float64' as never }), DtypeError, 'ERR_DTYPE', 'options.type');
  });

  test('a valid upload gives a device tensor or a coded rejection', async () => {
    const r = await Tensor.upload(new Float32Array(24).fill(1), [1, 2, 3, 4]).then(
      (t) => t,
      (e: unknown) => e,
    );
    if (r instanceof Tensor) {
      expect(['cuda', 'cuda-emu']).toContain(r.location);
      expect(Array.from(await r.download())).toEqual(new Array(24).fill(1));
      r.dispose();
    } else {
      expect(r).toBeInstanceOf(PsaError);
      expect(['ERR_BACKEND_UNAVAILABLE', 'ERR_CUDA']).toContain((r as PsaError).code);
      expect((r as PsaError).message.length).toBeGreaterThan(0);
    }
  });
});

describe('attention on cpu Tensors', () => {
  const optionSets: AttentionOptions[] = [
    {},
    { causal: true, returnLse: true, returnThresholds: true, topK: 4 },
    { causal: true, window: 5, globalTokens: 2, blockSize: 16, blocks: { ratio: 0.5 }, returnLse: true },
    { blockSize: 16, blocks: { progressive: 0.9 }, estimate: 'bound', shareAcrossGroup: true, softmax: 'poly' },
  ];

  test.each(optionSets.map((o, i) => [i, o] as const))('output is a Tensor equal to the Float32Array path (options %i)', async (_i, o) => {
    const t = tensors(3);
    const r = await attention(t.q, t.k, t.v, o);
    const ref = await attention(t.host.q, t.host.k, t.host.v, { shape: SHAPE, ...o });
    expect(r.output).toBeInstanceOf(Tensor);
    expect(r.output.location).toBe('cpu');
    expect(r.output.type).toBe('float32');
    expect(r.output.dims).toEqual([B, H, NQ, D]);
    expect(r.output.data).toEqual(ref.output);
    expect(r.lse).toEqual(ref.lse);
    expect(r.thresholds).toEqual(ref.thresholds);
    expect(r.stats).toEqual(ref.stats);
    expect(r.backend).toBe(ref.backend);
    expect(r.layout?.toJSON()).toEqual(ref.layout?.toJSON());
    // The output owns fresh storage.
    expect(r.output.data.buffer).not.toBe(t.host.q.buffer);
  });

  test('a shape that agrees with the dims is accepted; bnhd needs shape.layout', async () => {
    const t = tensors(4, 'bnhd');
    const r = await attention(t.q, t.k, t.v, { shape: { ...SHAPE, layout: 'bnhd' }, causal: true });
    const ref = await attention(t.host.q, t.host.k, t.host.v, { shape: { ...SHAPE, layout: 'bnhd' }, causal: true });
    expect(r.output.dims).toEqual([B, NQ, H, D]);
    expect(r.output.data).toEqual(ref.output);
    const partial = await attention(t.q, t.k, t.v, { shape: { layout: 'bnhd', heads: H } as never, causal: true });
    expect(partial.output.data).toEqual(ref.output);
  });

  test.each([
    ['batch', { batch: 3 }],
    ['heads', { heads: 2 }],
    ['kvHeads', { kvHeads: 4 }],
    ['seqQ', { seqQ: 20 }],
    ['seqK', { seqK: 19 }],
    ['headDim', { headDim: 16 }],
  ] as const)('shape.%s disagreeing with the dims is ERR_SHAPE', async (key, change) => {
    const t = tensors(5);
    await expectReject(attention(t.q, t.k, t.v, { shape: { ...SHAPE, ...change } }), ShapeError, 'ERR_SHAPE', `shape.${key}`);
  });

  test('dims that do not fit each other are ERR_SHAPE naming the tensor', async () => {
    const { q, k, v } = tensors(6);
    const kOtherBatch = Tensor.fromFloat32(new Float32Array(1 * HKV * NK * D), [1, HKV, NK, D]);
    await expectReject(attention(q, kOtherBatch, kOtherBatch), ShapeError, 'ERR_SHAPE', 'k');
    const kOtherDim = Tensor.fromFloat32(new Float32Array(B * HKV * NK * 4), [B, HKV, NK, 4]);
    await expectReject(attention(q, kOtherDim, kOtherDim), ShapeError, 'ERR_SHAPE', 'k');
    const vShort = Tensor.fromFloat32(new Float32Array(B * HKV * (NK - 1) * D), [B, HKV, NK - 1, D]);
    await expectReject(attention(q, k, vShort), ShapeError, 'ERR_SHAPE', 'v');
    const k3 = Tensor.fromFloat32(new Float32Array(B * 3 * NK * D), [B, 3, NK, D]);
    await expectReject(attention(q, k3, k3), ShapeError, 'ERR_SHAPE', 'shape.kvHeads');
    const big = Tensor.fromFloat32(new Float32Array(257), [1, 1, 1, 257]);
    await expectReject(attention(big, big, big), ShapeError, 'ERR_SHAPE', 'shape.headDim');
    void v;
  });

  test('Tensor options are checked like Float32Array options', async () => {
    const t = tensors(7);
    await expectReject(attention(t.q, t.k, t.v, { topK: 0 }), PsaError, 'ERR_OPTION', 'topK');
    await expectReject(attention(t.q, t.k, t.v, { dtype: 'float16' }), DtypeError, 'ERR_DTYPE', 'dtype');
    await expectReject(attention(t.q, t.k, t.v, { backend: 'cuda' }), PsaError, 'ERR_BACKEND_UNAVAILABLE', 'backend');
    await expectReject(attention(t.q, t.k, t.v, null as never), PsaError, 'ERR_OPTION', 'options');
  });

  test('a Tensor whose buffer was transferred after creation is a coded error, not a TypeError', async () => {
    const t = tensors(8);
    structuredClone(t.host.k, { transfer: [t.host.k.buffer as ArrayBuffer] });
    const err = await attention(t.q, t.k, t.v).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(PsaError);
    expect((err as PsaError).argument).toBe('k');
  });
});

describe('dispose', () => {
  test('dispose twice is fine; afterwards data, type, location and storage are ERR_DISPOSED', () => {
    const t = Tensor.fromFloat32(new Float32Array(24), [1, 2, 3, 4]);
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.dispose()).not.toThrow();
    expect(t.disposed).toBe(true);
    expectThrow(() => t.data, DisposedError, 'ERR_DISPOSED');
    expectThrow(() => t.type, DisposedError, 'ERR_DISPOSED');
    expectThrow(() => t.location, DisposedError, 'ERR_DISPOSED');
    expectThrow(() => t.storage, DisposedError, 'ERR_DISPOSED');
    // dims and size stay readable (metadata, no storage).
    expect(t.dims).toEqual([1, 2, 3, 4]);
    expect(t.size).toBe(24);
  });

  test('download() after dispose is ERR_DISPOSED', async () => {
    const t = Tensor.fromFloat32(new Float32Array(24), [1, 2, 3, 4]);
    t.dispose();
    await expectReject(Promise.resolve().then(() => t.download()), DisposedError, 'ERR_DISPOSED');
  });

  test('download() after dispose returns a rejected Promise rather than throwing synchronously', async () => {
    const t = Tensor.fromFloat32(new Float32Array(24), [1, 2, 3, 4]);
    t.dispose();
    let p: unknown;
    expect(() => {
      p = t.download();
    }).not.toThrow();
    await expectReject(p as Promise<unknown>, DisposedError, 'ERR_DISPOSED');
  });

  test('download() before dispose is a copy', async () => {
    const data = randomArray(24, 9);
    const t = Tensor.fromFloat32(data, [1, 2, 3, 4]);
    const copy = await t.download();
    expect(copy).toEqual(data);
    expect(copy.buffer).not.toBe(data.buffer);
    copy[0] = 99;
    expect(data[0]).not.toBe(99);
  });

  test.each(['q', 'k', 'v'] as const)('attention with a disposed %s rejects with ERR_DISPOSED', async (name) => {
    const t = tensors(10);
    t[name].dispose();
    await expectReject(attention(t.q, t.k, t.v), DisposedError, 'ERR_DISPOSED');
    // The others are left alone.
    for (const other of ['q', 'k', 'v'] as const) if (other !== name) expect(t[other].disposed).toBe(false);
  });

  test.each(['q', 'k', 'v'] as const)('the ERR_DISPOSED for a disposed %s names it as the argument', async (name) => {
    const t = tensors(10);
    t[name].dispose();
    await expectReject(attention(t.q, t.k, t.v), DisposedError, 'ERR_DISPOSED', name);
  });

  test('disposing a result does not touch the inputs; disposing inputs does not touch a result', async () => {
    const t = tensors(11);
    const r = await attention(t.q, t.k, t.v, { causal: true });
    const out = r.output.data.slice();
    r.output.dispose();
    expect(t.q.data).toEqual(t.host.q);
    const r2 = await attention(t.q, t.k, t.v, { causal: true });
    t.q.dispose();
    t.k.dispose();
    t.v.dispose();
    expect(r2.output.data).toEqual(out);
  });

  test('Symbol.dispose disposes', () => {
    expect(typeof Symbol.dispose).toBe('symbol');
    const t = Tensor.fromFloat32(new Float32Array(24), [1, 2, 3, 4]);
    expect(typeof t[Symbol.dispose]).toBe('function');
    t[Symbol.dispose]();
    expect(t.disposed).toBe(true);
    expectThrow(() => t.data, DisposedError, 'ERR_DISPOSED');
    expect(() => t[Symbol.dispose]()).not.toThrow();
  });
});

describe('value checks (lib/finite.ts, checkTensorFinite on cpu tensors)', () => {
  test('the overflow bounds are exactly where rounding to nearest even reaches Infinity', () => {
    const below = (x: number) => Math.fround(x * (1 - 2 ** -23));
    expect(halfBitsToFloat(toHalfBits(below(OVERFLOW_BOUND.float16)))).toBe(65504);
    expect(halfBitsToFloat(toHalfBits(OVERFLOW_BOUND.float16))).toBe(Infinity);
    expect(Math.fround(OVERFLOW_BOUND.bfloat16)).toBe(OVERFLOW_BOUND.bfloat16);
    expect(roundBf16(below(OVERFLOW_BOUND.bfloat16))).toBe((2 - 2 ** -7) * 2 ** 127);
    expect(roundBf16(OVERFLOW_BOUND.bfloat16)).toBe(Infinity);
    expect(OVERFLOW_BOUND.float32).toBe(Infinity);
  });

  test.each([
    ['float32', [1, -3.4e38, 3.4e38, 65520], null],
    ['float16', [1, 65504, Math.fround(65519.99), -65519], null],
    ['float16', [1, 2, 65520], 2],
    ['float16', [7e4, 0], 0],
    ['bfloat16', [1e38, -3.39e38], null],
    ['bfloat16', [0, 3.4e38], 1],
    ['float32', [0, 0, 0, NaN], 3],
    ['bfloat16', [-Infinity], 0],
  ] as const)('checkValues in %s of %j: refused at %s', (type, values, at) => {
    const run = () => checkValues('v', Float32Array.from(values), type);
    if (at === null) expect(run).not.toThrow();
    else expect(run).toThrow(expect.objectContaining({ code: 'ERR_VALUE', argument: 'v', message: expect.stringMatching(new RegExp(`^v\\[${at}\\] is `)) }));
  });

  test('raw 16-bit patterns: infinities and NaNs are refused, the largest finite ones kept', () => {
    expect(() => checkRawValues('data', Uint16Array.of(0x7bff, 0xfbff, 0x3c00), 'float16')).not.toThrow();
    expect(() => checkRawValues('data', Uint16Array.of(0x7f7f, 0xff7f), 'bfloat16')).not.toThrow();
    for (const [type, bits] of [['float16', 0x7c00], ['float16', 0xfe00], ['bfloat16', 0x7f80], ['bfloat16', 0x7fc1]] as const) {
      expectThrow(() => checkRawValues('data', Uint16Array.of(0, bits), type), ValueError, 'ERR_VALUE', 'data');
    }
  });

  test('Tensor.upload refuses values before any device is involved', async () => {
    await expectReject(Tensor.upload(Float32Array.of(0, 0, 0, NaN), [1, 1, 1, 4]), ValueError, 'ERR_VALUE', 'data');
    await expectReject(Tensor.upload(Float32Array.of(0, 7e4, 0, 0), [1, 1, 1, 4], { type: 'float16' }), ValueError, 'ERR_VALUE', 'data');
    await expectReject(Tensor.upload(Uint16Array.of(0, 0x7c00, 0, 0), [1, 1, 1, 4], { type: 'float16' }), ValueError, 'ERR_VALUE', 'data');
    await expectReject(Tensor.upload(new Float32Array(4), [1, 1, 1, 4], { device: 2 ** 31 }), PsaError, 'ERR_OPTION', 'options.device');
  });

  test('checkTensorFinite on cpu tensors: NaN, infinities and the overflow of the compute type, naming the input', async () => {
    const t = Tensor.fromFloat32(Float32Array.of(1, 2, 7e4, 4), [1, 1, 1, 4]);
    await expect(checkTensorFinite('k', t)).resolves.toBeUndefined();
    await expect(checkTensorFinite('k', t, 'bfloat16')).resolves.toBeUndefined();
    await expectReject(checkTensorFinite('k', t, 'float16'), ValueError, 'ERR_VALUE', 'k');
    t.data[1] = -Infinity;
    await expectReject(checkTensorFinite('q', t), ValueError, 'ERR_VALUE', 'q');
    const detached = Tensor.fromFloat32(new Float32Array(4), [1, 1, 1, 4]);
    structuredClone(detached.data, { transfer: [detached.data.buffer as ArrayBuffer] });
    await expectReject(checkTensorFinite('v', detached), ShapeError, 'ERR_SHAPE', 'v');
    detached.dispose();
    await expectReject(Promise.resolve().then(() => checkTensorFinite('v', detached)), DisposedError, 'ERR_DISPOSED');
  });
});
