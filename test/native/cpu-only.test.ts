/**
 * The CPU-only build (`PSA_CUDA=OFF`, what a machine without nvcc gets): it loads, says it has
 * no CUDA kernels and how to get them, device calls reject with ERR_BACKEND_UNAVAILABLE, and
 * `auto` computes on its cpu backend. Built here into build-cpu-only/ (about 15 s).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { missingTools, compile } = require('../../scripts/addon-build.js') as { missingTools(): string[]; compile(o: object): string };
const missing = missingTools();

if (missing.length) {
  test.skip(`CPU-only addon build: skipped because ${missing.join(', ')} is not installed`, () => {});
}

(missing.length ? describe.skip : describe)('CPU-only addon build', () => {
  let addonPath: string;
  beforeAll(() => {
    addonPath = compile({ outDir: 'build-cpu-only', cuda: false, quiet: true });
  }, 300_000);

  test('loads without CUDA, reports why, and auto computes on the cpu backend', () => {
    expect(existsSync(addonPath)).toBe(true);
    const script = `
      const psa = require(${JSON.stringify(join(root, 'dist', 'lib', 'index.js'))});
      (async () => {
        const i = psa.info();
        let upload;
        try { await psa.Tensor.upload(new Float32Array(4), [1, 1, 1, 4]); upload = 'ok'; } catch (e) { upload = e.code + ' ' + e.message; }
        const q = new Float32Array(2 * 16 * 8).map((_, j) => Math.sin(j));
        const r = await psa.attention(q, q, q, { shape: { batch: 1, heads: 2, seqQ: 16, headDim: 8 }, causal: true, window: 4 });
        console.log(JSON.stringify({ native: i.native, cuda: i.backends.find((b) => b.name === 'cuda'), upload, backend: r.backend, finite: r.output.every(Number.isFinite) }));
      })();`;
    const r = spawnSync(process.execPath, ['--no-warnings', '-e', script], { encoding: 'utf8', env: { ...process.env, PSA_ADDON_PATH: addonPath } });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.native.loaded).toBe(true);
    expect(out.native.path).toBe(addonPath);
    expect(out.native.runtime.compiled).toBe(false);
    expect(out.native.runtime.error.name).toBe('psaNotBuiltWithCuda');
    expect(out.cuda.available).toBe(false);
    expect(out.cuda.reason).toMatch(/no CUDA kernels.*npx psa build/);
    expect(out.upload).toMatch(/^ERR_BACKEND_UNAVAILABLE /);
    expect(out.backend).toBe('cpu');
    expect(out.finite).toBe(true);
  });
});
