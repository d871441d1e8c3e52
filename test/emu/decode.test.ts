/**
 * The decode kernels (cuda/decode), run in the emulated build by cuda/decode/decode_check.cc
 * against float64 host functions over the same rounded inputs: the pool and page metadata an
 * append writes, split-KV attention over the page flags (window, sinks, GQA packed, m >= 1,
 * odd page sizes and head dims, several splits), the page counts of ratio and topBlocks, PSA's
 * shortest prefix for progressive, top-k, and the LSE combine. One jest test per check. Then the
 * host side of a whole step, counted by the model, and steps in flight on one cache (they share
 * its step workspace, so the cache runs them one after another).
 */
import { KvCache, decode } from '../../lib';
import { loadEmuAddon } from '../../lib/native';
import { describeIf, unavailableReason } from '../backends';
import { checkProgramSuite } from './check-program';

checkProgramSuite('decode', 'decode kernel checks', 14);


interface HostCounts {
  allocations: number;
  frees: number;
  syncs: number;
}

/**
 * The host side of a device step, counted by the execution model around the second of two
 * identical steps (steady state): every temporary is carved from the cache's step workspace, and the
 * only synchronisations are the step's result and the call's upload of q and download of the
 * output (host arrays in and out).
 */
describeIf(unavailableReason('cuda-emu'), 'decode step: host allocations and syncs (emulated counters)', () => {
  test.each([
    ['dense', {}],
    ['progressive 0.95 with top-k', { blocks: { progressive: 0.95 }, topK: 8 }],
  ] as const)('%s: 0 allocations, 0 frees, 3 syncs per step in steady state', async (_name, extra) => {
    const emu = loadEmuAddon();
    if (!emu.loaded) throw new Error(emu.reason);
    const counters = (emu.addon as unknown as { counters(action: string): { host: HostCounts } | undefined }).counters;
    const [batch, kvHeads, heads, headDim, length] = [2, 2, 8, 24, 300];
    let seed = 7;
    const random = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) - 0.5);
    const cache = await KvCache.create({ batch, kvHeads, headDim, capacity: 512, location: 'cuda-emu' });
    try {
      await cache.append(random(batch * kvHeads * length * headDim), random(batch * kvHeads * length * headDim));
      const q = random(batch * heads * headDim);
      const steps: HostCounts[] = [];
      try {
        for (let i = 0; i < 2; i++) {
          counters('start');
          await decode(q, cache, { heads, ...extra });
          steps.push(counters('take')!.host);
        }
      } finally {
        counters('stop');
      }
      expect(steps[1]).toEqual({ allocations: 0, frees: 0, syncs: 3 });
    } finally {
      cache.dispose();
    }
  }, 120_000);
});

describeIf(unavailableReason('cuda-emu'), 'decode steps in flight on one cache (emulated)', () => {
  test('two steps at once, of different selections, each give what they give alone', async () => {
    const [kvHeads, heads, headDim, length] = [2, 4, 16, 200];
    let seed = 11;
    const random = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) - 0.5);
    const cache = await KvCache.create({ batch: 1, kvHeads, headDim, capacity: 256, location: 'cuda-emu' });
    try {
      await cache.append(random(kvHeads * length * headDim), random(kvHeads * length * headDim));
      const steps = [
        { q: random(heads * headDim), options: { heads } },
        { q: random(heads * headDim), options: { heads, blocks: { progressive: 0.9 }, topK: 5 } },
      ];
      const alone = [];
      for (const s of steps) alone.push((await decode(s.q, cache, s.options)).output);
      const together = await Promise.all(steps.map((s) => decode(s.q, cache, s.options)));
      expect(together.map((r) => r.output)).toEqual(alone);
    } finally {
      cache.dispose();
    }
  }, 120_000);
});
