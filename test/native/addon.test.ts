/**
 * The native addon as built by `npm install` (build/Release): what it reports, how device
 * calls fail where no device is usable, per-thread state, and the one fallback warning.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { attention, info, PsaError, Tensor } from '../../lib';
import { loadAddon } from '../../lib/native';

const root = join(__dirname, '..', '..');
const addonPath = join(root, 'build', 'Release', 'psa_attention.node');
const built = existsSync(addonPath);
const addon = built ? loadAddon() : null;
const runtime = addon?.loaded ? addon.runtime : null;
const hasDevice = !!runtime && runtime.devices.length > 0;

if (!built) {
  test.skip(`native addon: skipped because ${addonPath} is absent (npm install builds it where cmake and g++ exist)`, () => {});
}

(built ? describe : describe.skip)('native addon (build/Release)', () => {
  test('loads and reports its CUDA build', () => {
    expect(addon!.loaded).toBe(true);
    const n = info().native;
    expect(n.loaded).toBe(true);
    if (!n.loaded) return;
    expect(typeof n.runtime.compiled).toBe('boolean');
    if (n.runtime.compiled) {
      expect(n.runtime.runtimeVersion).toBeGreaterThanOrEqual(12000);
      expect(n.runtime.targets).toContain('80');
    }
  });

  (hasDevice ? test.skip : test)('without a usable device it states the runtime error (35 without a driver, 100 without a GPU)', () => {
    const n = info().native;
    if (!n.loaded) throw new Error('addon not loaded');
    expect(n.runtime.devices).toEqual([]);
    expect(n.runtime.error).toBeDefined();
    if (n.runtime.compiled) {
      expect([35, 100]).toContain(n.runtime.error!.code);
      expect(n.runtime.error!.name).toMatch(/^cudaError(InsufficientDriver|NoDevice)$/);
    } else {
      expect(n.runtime.error!.name).toBe('psaNotBuiltWithCuda');
    }
    const cuda = info().backends.find((b) => b.name === 'cuda')!;
    expect(cuda.available).toBe(false);
    expect(cuda.reason).toContain(n.runtime.error!.name);
  });

  (hasDevice ? test.skip : test)('device uploads reject with ERR_BACKEND_UNAVAILABLE and the runtime reason', async () => {
    const data = new Float32Array(2 * 3 * 4 * 5);
    await expect(Tensor.upload(data, [2, 3, 4, 5], { type: 'float16' })).rejects.toMatchObject({ code: 'ERR_BACKEND_UNAVAILABLE' });
    await expect(Tensor.upload(new Uint16Array(120), [2, 3, 4, 5], { type: 'bfloat16' })).rejects.toBeInstanceOf(PsaError);
  });

  test('upload arguments are checked before any device work', async () => {
    await expect(Tensor.upload(new Float32Array(7), [1, 1, 2, 4])).rejects.toMatchObject({ code: 'ERR_SHAPE', argument: 'data' });
    await expect(Tensor.upload(new Float64Array(8) as unknown as Float32Array, [1, 1, 2, 4])).rejects.toMatchObject({ code: 'ERR_DTYPE' });
    await expect(Tensor.upload(new Uint16Array(8), [1, 1, 2, 4])).rejects.toMatchObject({ code: 'ERR_DTYPE', argument: 'options.type' });
    await expect(Tensor.upload(new Uint16Array(8), [1, 1, 2, 4], { type: 'float32' })).rejects.toMatchObject({ code: 'ERR_DTYPE' });
    await expect(Tensor.upload(new Float32Array(8), [1, 1, 2, 4], { device: -1 })).rejects.toMatchObject({ code: 'ERR_OPTION' });
    await expect(Tensor.upload(new Float32Array(8), [1, 2, 4])).rejects.toMatchObject({ code: 'ERR_SHAPE', argument: 'dims' });
  });

  test('the raw addon rejects wrong argument types with coded errors', () => {
    if (!addon?.loaded) throw new Error('addon not loaded');
    expect(() => addon.addon.upload(new Float64Array(4) as unknown as Float32Array, 'float32')).toThrow(expect.objectContaining({ code: 'ERR_DTYPE' }));
    expect(() => addon.addon.upload(new Float32Array(4), 'float8')).toThrow(expect.objectContaining({ code: 'ERR_DTYPE' }));
    expect(() => addon.addon.uploadRaw16(new Uint16Array(4), 'float32')).toThrow(expect.objectContaining({ code: 'ERR_DTYPE' }));
  });

  (hasDevice ? test.skip : test)("backend 'cuda' rejects with the reason", async () => {
    const q = new Float32Array(16);
    const p = attention(q, q, q, { shape: { batch: 1, heads: 1, seqQ: 4, headDim: 4 }, backend: 'cuda' });
    await expect(p).rejects.toMatchObject({ code: 'ERR_BACKEND_UNAVAILABLE', backend: 'cuda' });
    await expect(p).rejects.toThrow(/cuda/i);
  });

  test('loads in several worker_threads at once, each with its own state', async () => {
    const script = `
      const { parentPort } = require('node:worker_threads');
      const a = require(${JSON.stringify(addonPath)});
      a.init((kind, name, message) => Object.assign(new Error(message), { code: kind }));
      const i = a.info();
      a.upload(new Float32Array(8), 'float32').then(
        (t) => { t.dispose(); parentPort.postMessage({ compiled: i.compiled, upload: 'ok' }); },
        (e) => parentPort.postMessage({ compiled: i.compiled, upload: e.code }));`;
    const results = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<{ compiled: boolean; upload: string }>((resolve, reject) => {
            const w = new Worker(script, { eval: true });
            w.once('message', (m) => {
              resolve(m);
              void w.terminate();
            });
            w.once('error', reject);
          }),
      ),
    );
    for (const r of results) {
      expect(r.compiled).toBe(runtime!.compiled);
      expect(r.upload).toBe(hasDevice ? 'ok' : 'unavailable');
    }
  });

  test("'auto' falls back to cpu with exactly one coded warning per process", () => {
    const script = `
      const { attention } = require(${JSON.stringify(join(root, 'dist', 'lib', 'index.js'))});
      const q = new Float32Array(16).fill(1);
      (async () => { for (let i = 0; i < 3; i++) await attention(q, q, q, { shape: { batch: 1, heads: 1, seqQ: 4, headDim: 4 } }); })();
      process.on('warning', (w) => console.log('WARNING ' + w.code + ' ' + w.message));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const warnings = r.stdout.split('\n').filter((l) => l.startsWith('WARNING'));
    if (hasDevice) return; // with a device and kernels there is nothing to warn about
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^WARNING PSA_BACKEND_FALLBACK backend 'auto' is using 'cpu': CUDA is unavailable: /);
  });
});
