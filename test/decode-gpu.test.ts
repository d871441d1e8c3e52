/**
 * The decode step on a real device (cuda/PERF.md#the-check-a-device-run-makes): a 64k device
 * cache of the demo's synthetic context (topic segments, one planted needle), one step dense and
 * one with PSA's defaults and progressive 0.95. Checks the outputs against the float64 oracle on
 * sampled heads, and that the device reads the pages the js reference reads on the same data;
 * prints the times, the page fraction f and the HBM floor of f for reading against the model.
 * Skips with the reason where the cuda backend is unavailable.
 */
import { decode, KvCache } from '../lib/index';
import type { DecodeOptions } from '../lib/index';
import { syntheticCase } from '../lib/demo';
import { describeIf, unavailableReason } from './backends';
import { relFrob } from './compare';
import { decodeOracle } from './decode-oracle';
import { PROFILES } from './profiles';
import { roundTo } from './rounding';

const unavailable = unavailableReason('cuda');
const H = 8;
const L = 65536;
const D = 128;
const PSA: DecodeOptions = { window: 512, globalTokens: 4, blocks: { progressive: 0.95 }, estimate: 'moment' };
/** H100 SXM5 HBM3; cuda/PERF.md §1. */
const HBM_BYTES_PER_S = 3.35e12;

describeIf(unavailable === null ? null : `backend 'cuda' unavailable: ${unavailable}`, 'decode on the device at 64k [backend cuda]', () => {
  test('dense and progressive 0.95: correct, the reference pages, and the timings', async () => {
    const c = syntheticCase(H, L, D, 1, true, 1);
    const q = new Float32Array(H * D);
    for (let h = 0; h < H; h++) q.set(c.q.subarray((h * L + L - 1) * D, (h * L + L) * D), h * D);
    const device = await KvCache.create({ batch: 1, kvHeads: H, headDim: D, capacity: L, location: 'cuda' });
    const host = await KvCache.create({ batch: 1, kvHeads: H, headDim: D, capacity: L });
    const k16 = roundTo(c.k, 'float16');
    const v16 = roundTo(c.v, 'float16');
    try {
      await device.append(c.k, c.v);
      await host.append(k16, v16);
      const q16 = roundTo(q, 'float16');
      const time = async (options: DecodeOptions) => {
        for (let i = 0; i < 3; i++) await decode(q, device, { ...options, heads: H });
        const t0 = performance.now();
        for (let i = 0; i < 20; i++) await decode(q, device, { ...options, heads: H });
        return ((performance.now() - t0) / 20) * 1000;
      };
      const dense = await decode(q, device, { heads: H });
      const psa = await decode(q, device, { ...PSA, heads: H });
      const tol = PROFILES.cuda.tolerance.float16!;
      for (const [r, options] of [[dense, {}], [psa, PSA]] as const) {
        const want = decodeOracle(q16, [{ k: k16, v: v16, length: L }], H, D, { ...(options as object), heads: H, pageSize: 32 });
        expect(relFrob(r.output, want.output)).toBeLessThan(tol);
      }
      const ref = await decode(q16, host, { ...PSA, heads: H });
      expect(psa.stats.pagesRead).toBe(ref.stats.pagesRead);
      const denseUs = await time({});
      const psaUs = await time(PSA);
      const f = psa.stats.pagesRead / psa.stats.pagesReadDense;
      const denseBytes = 2 * L * H * D * 2;
      const metaBytes = (L / 32) * H * 2 * D * 4;
      const floorUs = ((metaBytes + f * denseBytes) / HBM_BYTES_PER_S) * 1e6;
      // eslint-disable-next-line no-console
      console.log(`decode 64k, ${H} kv heads, D ${D}: dense ${denseUs.toFixed(1)} µs, PSA ${psaUs.toFixed(1)} µs (${(denseUs / psaUs).toFixed(2)}x), ` +
        `f ${(100 * f).toFixed(1)}%, HBM floor ${floorUs.toFixed(1)} µs (PSA at ${(psaUs / floorUs).toFixed(1)}x it)`);
    } finally {
      device.dispose();
      host.dispose();
    }
  }, 600_000);
});
