/**
 * Device tensors: the conversion kernels (cuda/convert.cuh) and the addon's upload/download
 * path, checked against host roundings written here from the IEEE definitions, and the
 * handle's misuse errors. Runs on the emulated build (cuda-emu) and, where a GPU is usable,
 * on the device build (cuda).
 */
import { attention, Tensor } from '../../lib';
import { OVERFLOW_BOUND } from '../../lib/finite';
import { loadAddon, loadEmuAddon } from '../../lib/native';
import { checkTensorFinite, checkTensorsFinite, DeviceStorage } from '../../lib/tensor';
import { halfBitsToFloat, roundBf16, toHalfBits } from '../rounding';

function locationStatus(location: 'cuda' | 'cuda-emu'): string | null {
  const a = location === 'cuda' ? loadAddon() : loadEmuAddon();
  if (!a.loaded) return a.reason;
  if (a.runtime.error) return `${a.runtime.error.name}: ${a.runtime.error.message}`;
  return a.runtime.devices.length ? null : 'no device';
}

const values = new Float32Array([
  0, -0, 1, -1, 1.0001, 3.14159265, 65504, 65519, 65520, 1e5, -1e5, 6.1e-5, 5.96e-8, 2.9e-8, 1e-10, 0.1, 0.2, 0.3, 1 / 3, 2049, 4097, 8195,
  1.5e38, -3e38, 3e-39, 257.5, 258.5, -7.25e-3,
]);
/** The values that stay finite in float16 (the others are refused before any upload). */
const half = new Float32Array(values.length);
values.forEach((x, i) => (half[i] = Math.abs(x) < OVERFLOW_BOUND.float16 ? x : Math.sign(x) * (i + 0.5)));

for (const location of ['cuda-emu', 'cuda'] as const) {
const unusable = locationStatus(location);
if (unusable) {
  test.skip(`${location} tensors: skipped because ${unusable}`, () => {});
}

(unusable ? describe.skip : describe)(`${location} device tensors`, () => {
  const dims = [1, 1, 4, 7] as const;

  test('float32 round-trips exactly', async () => {
    using t = await Tensor.upload(values, dims, { location });
    expect(t.location).toBe(location);
    expect(t.type).toBe('float32');
    expect(Array.from(await t.download())).toEqual(Array.from(values));
  });

  test('float16 conversion on the device rounds to nearest even', async () => {
    using t = await Tensor.upload(half, dims, { location, type: 'float16' });
    const back = await t.download();
    half.forEach((x, i) => expect(Object.is(back[i], halfBitsToFloat(toHalfBits(x))) || back[i] === halfBitsToFloat(toHalfBits(x))).toBe(true));
  });

  test('values that would become Infinity in the stored type are ERR_VALUE naming data, the largest that do not are kept', async () => {
    const below16 = Math.fround(65519.996);
    using t16 = await Tensor.upload(Float32Array.of(below16, -below16, 65504), [1, 1, 1, 3], { location, type: 'float16' });
    expect(Array.from(await t16.download())).toEqual([65504, -65504, 65504]);
    for (const x of [65520, -65520, 7e4, 1e5]) {
      await expect(Tensor.upload(Float32Array.of(0, x), [1, 1, 1, 2], { location, type: 'float16' })).rejects.toMatchObject({ code: 'ERR_VALUE', argument: 'data', message: expect.stringContaining('data[1]') });
    }
    const bfMax = (2 - 2 ** -7) * 2 ** 127;
    const belowBf = Math.fround(OVERFLOW_BOUND.bfloat16 * (1 - 2 ** -20));
    using tb = await Tensor.upload(Float32Array.of(belowBf, -belowBf), [1, 1, 1, 2], { location, type: 'bfloat16' });
    expect(Array.from(await tb.download())).toEqual([bfMax, -bfMax]);
    for (const x of [OVERFLOW_BOUND.bfloat16, 3.4e38]) {
      await expect(Tensor.upload(Float32Array.of(x), [1, 1, 1, 1], { location, type: 'bfloat16' })).rejects.toMatchObject({ code: 'ERR_VALUE', argument: 'data' });
    }
    for (const x of [NaN, Infinity, -Infinity]) {
      await expect(Tensor.upload(Float32Array.of(1, 2, x), [1, 1, 1, 3], { location })).rejects.toMatchObject({ code: 'ERR_VALUE', argument: 'data', message: expect.stringContaining('data[2]') });
    }
  });

  test('raw 16-bit infinities and NaNs are ERR_VALUE naming data', async () => {
    for (const [type, bits] of [['float16', [0x7c00, 0xfc00, 0x7e00, 0x7c01]], ['bfloat16', [0x7f80, 0xff80, 0x7fc0]]] as const) {
      for (const b of bits) {
        await expect(Tensor.upload(Uint16Array.of(0x3c00, b), [1, 1, 1, 2], { location, type })).rejects.toMatchObject({ code: 'ERR_VALUE', argument: 'data', message: expect.stringContaining('data[1]') });
      }
    }
  });

  test.each(['float32', 'float16', 'bfloat16'] as const)('the device value check finds the first bad %s element', async (type) => {
    // The raw addon stores what it is given (Tensor.upload would refuse these values).
    const a = location === 'cuda' ? loadAddon() : loadEmuAddon();
    if (!a.loaded) throw new Error(a.reason);
    const n = 3 * 256 * 5 + 17; // several blocks, a ragged end
    const one = { float32: 0, float16: 0x3c00, bfloat16: 0x3f80 }[type];
    const bad = { float32: 0, float16: 0x7e00, bfloat16: 0xff80 }[type];
    const upload = async (at: number[]) => {
      const native = type === 'float32'
        ? await a.addon.upload(Float32Array.from({ length: n }, (_, i) => (at.includes(i) ? (i % 2 ? NaN : -Infinity) : 1)), 'float32')
        : await a.addon.uploadRaw16(Uint16Array.from({ length: n }, (_, i) => (at.includes(i) ? bad : one)), type);
      return new Tensor(new DeviceStorage(location, native), [1, 1, 1, n]);
    };
    for (const at of [[], [0], [n - 1], [700, 3000, 3001], [3001, 700]]) {
      using t = await upload(at);
      expect(await (t.storage as DeviceStorage).firstNonFinite(Infinity)).toBe(at.length ? Math.min(...at) : -1);
      if (at.length) await expect(checkTensorFinite('v', t)).rejects.toMatchObject({ code: 'ERR_VALUE', argument: 'v', message: expect.stringContaining(`v[${Math.min(...at)}]`) });
    }
  });

  test('several tensors checked at once: each one\'s first bad element, one wait, the first failure in argument order', async () => {
    const a = location === 'cuda' ? loadAddon() : loadEmuAddon();
    if (!a.loaded) throw new Error(a.reason);
    const values = [Float32Array.of(1, 2, 3), Float32Array.of(1, NaN, Infinity, 4), new Float32Array(0), Float32Array.of(0, 0, 0, 0, -Infinity)];
    const natives = await Promise.all(values.map((v) => a.addon.upload(v, 'float32')));
    try {
      expect(await a.addon.firstNonFiniteEach(natives)).toEqual([-1, 1, -1, 4]);
      expect(await a.addon.firstNonFiniteEach([natives[0], natives[0]], 2.5)).toEqual([2, 2]);
      const tensors = natives.map((n, i) => new Tensor(new DeviceStorage(location, n), [1, 1, 1, values[i].length]));
      await expect(checkTensorsFinite([['q', tensors[0]], ['k', tensors[1]], ['v', tensors[3]]], 'float32')).rejects.toMatchObject({ code: 'ERR_VALUE', argument: 'k', message: expect.stringContaining('k[1]') });
      await expect(checkTensorsFinite([['q', tensors[3]], ['k', tensors[1]]], 'float32')).rejects.toMatchObject({ argument: 'q' });
      await expect(checkTensorsFinite([['q', tensors[0]], ['k', tensors[2]]], 'float32')).resolves.toBeUndefined();
      // A host tensor among them is checked on the host, in the same order.
      using host = Tensor.fromFloat32(Float32Array.of(NaN), [1, 1, 1, 1]);
      await expect(checkTensorsFinite([['q', tensors[0]], ['k', host], ['v', tensors[1]]], 'float32')).rejects.toMatchObject({ argument: 'k' });
    } finally {
      for (const n of natives) n.dispose();
    }
  });

  test('the device value check applies the overflow bound of the type a call computes in', async () => {
    using t = await Tensor.upload(Float32Array.of(1, 65504, 65519, 65520, 1e30), [1, 1, 1, 5], { location });
    await expect(checkTensorFinite('q', t)).resolves.toBeUndefined();
    await expect(checkTensorFinite('q', t, 'bfloat16')).resolves.toBeUndefined();
    await expect(checkTensorFinite('q', t, 'float16')).rejects.toMatchObject({ code: 'ERR_VALUE', argument: 'q', message: expect.stringContaining('q[3]') });
    using h = await Tensor.upload(half, dims, { location, type: 'float16' });
    await expect(checkTensorFinite('k', h, 'float16')).resolves.toBeUndefined();
  });

  test('bfloat16 conversion on the device rounds to nearest even', async () => {
    using t = await Tensor.upload(values, dims, { location, type: 'bfloat16' });
    const back = await t.download();
    values.forEach((x, i) => expect(back[i]).toBe(roundBf16(x)));
  });

  test('raw 16-bit uploads keep the bits', async () => {
    const bits = Uint16Array.from(half, (x) => toHalfBits(x));
    using t = await Tensor.upload(bits, dims, { location, type: 'float16' });
    const back = await t.download();
    bits.forEach((b, i) => expect(back[i]).toBe(halfBitsToFloat(b)));
  });

  test('a large tensor goes through in chunks and comes back whole', async () => {
    const n = 1024 * 1024 + 5;
    const x = Float32Array.from({ length: n }, (_, i) => (i % 1000) / 8);
    using t = await Tensor.upload(x, [1, 1, 1, n], { location, type: 'bfloat16' });
    const back = await t.download();
    expect(back.length).toBe(n);
    expect(back[n - 1]).toBe(roundBf16(x[n - 1]));
    expect(back[123457]).toBe(roundBf16(x[123457]));
  });

  test('misuse: double dispose is harmless, use after dispose is ERR_DISPOSED', async () => {
    const t = await Tensor.upload(values, dims, { location });
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    await expect(t.download()).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
    expect(() => t.type).toThrow(expect.objectContaining({ code: 'ERR_DISPOSED' }));
    await expect(attention(t, t, t)).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
  });

  test('misuse: wrong dtype and short buffers are refused before any device work', async () => {
    await expect(Tensor.upload(new Float64Array(28) as unknown as Float32Array, dims, { location })).rejects.toMatchObject({ code: 'ERR_DTYPE' });
    await expect(Tensor.upload(new Float32Array(27), dims, { location })).rejects.toMatchObject({ code: 'ERR_SHAPE' });
    await expect(Tensor.upload(new Uint16Array(28), dims, { location, type: 'float32' })).rejects.toMatchObject({ code: 'ERR_DTYPE' });
  });

  test('a dispose while a download is in flight lets the download finish', async () => {
    const t = await Tensor.upload(half, dims, { location, type: 'float16' });
    const pending = t.download();
    t.dispose();
    expect((await pending).length).toBe(values.length);
  });

  test('attention on emulated-device tensors returns a tensor on the same device', async () => {
    const q = Float32Array.from({ length: 2 * 8 * 4 }, (_, i) => Math.sin(i));
    const tq = await Tensor.upload(q, [1, 2, 8, 4], { location });
    const r = await attention(tq, tq, tq, { causal: true, backend: 'js' });
    expect((r.output as Tensor).location).toBe(location);
    const host = await attention(q, q, q, { shape: { batch: 1, heads: 2, seqQ: 8, headDim: 4 }, causal: true, backend: 'js' });
    expect(Array.from(await (r.output as Tensor).download())).toEqual(Array.from(host.output));
  });

  test(`backend '${location}' computes from Float32Arrays in float16 by default`, async () => {
    const q = Float32Array.from({ length: 2 * 8 * 4 }, (_, i) => halfBitsToFloat(toHalfBits(Math.cos(i))));
    const shape = { batch: 1, heads: 2, seqQ: 8, headDim: 4 };
    const r = await attention(q, q, q, { shape, causal: true, backend: location });
    expect(r.backend).toBe(location);
    const host = await attention(q, q, q, { shape, causal: true, backend: 'js' });
    let num = 0;
    let den = 0;
    r.output.forEach((x, i) => {
      num += (x - host.output[i]) ** 2;
      den += host.output[i] ** 2;
    });
    expect(Math.sqrt(num / den)).toBeLessThan(5e-3);
  });
});
}
