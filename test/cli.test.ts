/** The CLI and the demo, called directly (no build needed): `psa info`, `psa demo`, exit codes. */
import { info } from '../lib';
import { runDemo } from '../lib/demo';
import { testIf, unavailableReason } from './backends';
import { BACKENDS } from './profiles';
import { capture } from './cli-capture';

afterEach(() => {
  process.exitCode = undefined;
});

describe('runDemo', () => {
  test('small case: the needle block is selected in every head, sparse is close to dense', async () => {
    const r = await runDemo({ heads: 2, seq: 512, dim: 64 });
    expect(r.backend).toBe(info().autoBackend);
    expect(r.needleInWindow).toBe(false);
    expect(r.needle.queryBlocks).toEqual([7]);
    expect(r.needleSelected).toEqual([true, true]);
    expect(r.allHeadsSelected).toBe(true);
    expect(r.dense.density).toBe(1);
    expect(r.sparse.density).toBeGreaterThan(0);
    expect(r.sparse.density).toBeLessThan(1);
    expect(r.sparse.blocksVisited).toBeLessThan(r.sparse.blocksDense);
    expect(r.relError).toBeLessThan(0.05);
    expect(r.relErrorNeedleRows).toBeLessThan(1e-2);
    // Without block selection the needle rows miss the needle: the comparison the demo shows.
    expect(r.windowOnly.relErrorNeedleRows).toBeGreaterThan(0.5);
    expect(r.speedup).toBeGreaterThan(0);
  });

  test('is deterministic for a seed', async () => {
    const a = await runDemo({ heads: 1, seq: 256, dim: 16, seed: 7, warmup: false });
    const b = await runDemo({ heads: 1, seq: 256, dim: 16, seed: 7, warmup: false });
    expect(a.relError).toBe(b.relError);
    expect(a.sparse.density).toBe(b.sparse.density);
  });
});

describe('psa CLI', () => {
  test('info --json lists every backend with a reason and what auto resolves to', async () => {
    const { code, out } = await capture(['info', '--json']);
    expect(code).toBe(0);
    const i = JSON.parse(out);
    expect(typeof i.version).toBe('string');
    expect(i.platform).toBe(`${process.platform}-${process.arch}`);
    expect(i.backends.map((b: { name: string }) => b.name)).toEqual(['js', 'cpu', 'cuda', 'cuda-emu']);
    for (const b of i.backends) {
      expect(typeof b.available).toBe('boolean');
      expect(b.reason.length).toBeGreaterThan(0);
    }
    expect(i.backends[0].available).toBe(true);
    expect(['cuda', 'cpu', 'js']).toContain(i.autoBackend);
  });

  test('info prints a readable table', async () => {
    const { code, out } = await capture(['info']);
    expect(code).toBe(0);
    expect(out).toMatch(/^psa-attention \S+ \(node v\d+/);
    for (const name of ['js', 'cpu', 'cuda', 'cuda-emu']) expect(out).toMatch(new RegExp(`^  ${name} +(yes|no) `, 'm'));
    expect(out).toMatch(/^auto -> \S+$/m);
  });

  test('demo --json at a small size', async () => {
    const { code, out } = await capture(['demo', '--heads', '1', '--seq', '512', '--dim', '32', '--json']);
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(r.heads).toBe(1);
    expect(r.seq).toBe(512);
    expect(r.dim).toBe(32);
    expect(r.allHeadsSelected).toBe(true);
  });

  test('a PsaError exits 1 with code: message', async () => {
    const { code, err } = await capture(['demo', '--heads', '1', '--seq', '64', '--dim', '300']);
    expect(code).toBe(1);
    expect(err).toMatch(/^ERR_SHAPE: .*headDim/);
  });

  const absent = BACKENDS.find((b) => unavailableReason(b) !== null);
  testIf(absent === undefined ? 'every backend is available here' : null, `an unavailable backend (${absent}) exits 1 with ERR_BACKEND_UNAVAILABLE`, async () => {
    const { code, err } = await capture(['demo', '--heads', '1', '--seq', '64', '--backend', absent!]);
    expect(code).toBe(1);
    expect(err).toMatch(/^ERR_BACKEND_UNAVAILABLE: /);
  });

  test('bad arguments exit 1', async () => {
    expect((await capture(['demo', '--heads', 'x'])).code).toBe(1);
    expect((await capture(['nonsense'])).code).toBe(1);
  });
});
