/**
 * The decode scenario of `psa demo --decode`: a long synthetic context (topic segments and a
 * planted needle, as the prefill demo) is prefilled into a KvCache, then `steps` tokens are
 * generated one at a time, each appended and decoded twice, dense and with PSA's per-token
 * progressive page selection. Every generated query carries the needle direction, so the
 * needle's page must be read at every step. Reported: time per token, pages read, the
 * estimated and the exact dropped attention mass, and whether the needle was found each step.
 */
import { decode } from './decode';
import { syntheticCase } from './demo';
import { KvCache } from './kv-cache';
import type { DecodeOptions } from './decode';

export interface DecodeDemoOptions {
  heads?: number;
  seq?: number;
  dim?: number;
  steps?: number;
  seed?: number;
  /** Called after each generated token (progress). */
  onStep?: (step: number, steps: number) => void;
}

export interface DecodeDemoReport {
  heads: number;
  context: number;
  dim: number;
  steps: number;
  pageSize: number;
  psaOptions: DecodeOptions;
  dense: { msPerToken: number };
  psa: {
    msPerToken: number;
    /** Pages read over pages a dense step reads, mean over steps. */
    pagesRead: number;
    /** Worst estimated R/(Z+R) over every row and step. */
    estimatedDroppedMax: number;
    /** Exact share of the attention mass not read, 1 - exp(lse_psa - lse_dense): mean and worst over rows and steps. */
    droppedMean: number;
    droppedMax: number;
    /** Relative Frobenius error of the outputs against dense, worst step. */
    relErrorMax: number;
  };
  /** Steps at which every head read the needle's page. */
  needleFoundSteps: number;
  speedup: number;
}

export const DECODE_DEMO_DEFAULTS = { heads: 8, seq: 16384, dim: 64, steps: 256, seed: 1 } as const;
const PAGE_SIZE = 32;

export async function runDecodeDemo(o: DecodeDemoOptions = {}): Promise<DecodeDemoReport> {
  const H = o.heads ?? DECODE_DEMO_DEFAULTS.heads;
  const N = o.seq ?? DECODE_DEMO_DEFAULTS.seq;
  const D = o.dim ?? DECODE_DEMO_DEFAULTS.dim;
  const steps = o.steps ?? DECODE_DEMO_DEFAULTS.steps;
  const total = N + steps;
  const c = syntheticCase(H, total, D, o.seed ?? DECODE_DEMO_DEFAULTS.seed, true, steps);
  const rows = (x: Float32Array, from: number, n: number) => {
    const out = new Float32Array(H * n * D);
    for (let h = 0; h < H; h++) out.set(x.subarray((h * total + from) * D, (h * total + from + n) * D), h * n * D);
    return out;
  };
  const cache = await KvCache.create({ batch: 1, kvHeads: H, headDim: D, capacity: total, pageSize: PAGE_SIZE });
  const psaOptions: DecodeOptions = { window: 512, globalTokens: 4, blocks: { progressive: 0.95 }, estimate: 'moment' };
  const needlePage = Math.floor(c.needleStart / PAGE_SIZE);
  let denseMs = 0;
  let psaMs = 0;
  let pagesRead = 0;
  let estimatedDroppedMax = 0;
  let droppedSum = 0;
  let droppedMax = 0;
  let relErrorMax = 0;
  let found = 0;
  try {
    await cache.append(rows(c.k, 0, N), rows(c.v, 0, N));
    for (let t = 0; t < steps; t++) {
      await cache.append(rows(c.k, N + t, 1), rows(c.v, N + t, 1));
      const q = rows(c.q, N + t, 1);
      let t0 = performance.now();
      const dense = await decode(q, cache, { heads: H, returnLse: true });
      denseMs += performance.now() - t0;
      t0 = performance.now();
      const psa = await decode(q, cache, { ...psaOptions, heads: H, returnLse: true, returnPages: true });
      psaMs += performance.now() - t0;
      pagesRead += psa.stats.pagesRead / psa.stats.pagesReadDense;
      estimatedDroppedMax = Math.max(estimatedDroppedMax, psa.stats.droppedMass.max);
      for (let h = 0; h < H; h++) {
        const dropped = 1 - Math.exp(psa.lse![h] - dense.lse![h]);
        droppedSum += dropped;
        droppedMax = Math.max(droppedMax, dropped);
      }
      let num = 0;
      let den = 0;
      for (let x = 0; x < dense.output.length; x++) {
        num += (psa.output[x] - dense.output[x]) ** 2;
        den += dense.output[x] ** 2;
      }
      relErrorMax = Math.max(relErrorMax, Math.sqrt(num / den));
      if (psa.pages!.every((p) => p.includes(needlePage))) found++;
      o.onStep?.(t + 1, steps);
    }
  } finally {
    cache.dispose();
  }
  return {
    heads: H, context: N, dim: D, steps, pageSize: PAGE_SIZE, psaOptions,
    dense: { msPerToken: denseMs / steps },
    psa: {
      msPerToken: psaMs / steps, pagesRead: pagesRead / steps, estimatedDroppedMax,
      droppedMean: droppedSum / (steps * H), droppedMax, relErrorMax,
    },
    needleFoundSteps: found,
    speedup: denseMs / psaMs,
  };
}

export function formatDecodeDemo(r: DecodeDemoReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  return [
    `decode: ${r.steps} tokens generated against a ${r.context}-token context (${r.heads} heads, head dim ${r.dim}, pages of ${r.pageSize}), js backend`,
    `  dense                                    ${r.dense.msPerToken.toFixed(1)} ms/token, every page`,
    `  PSA (window 512, 4 sinks, progressive 0.95, moment)  ${r.psa.msPerToken.toFixed(1)} ms/token (${r.speedup.toFixed(2)}x), ${pct(r.psa.pagesRead)} of the pages`,
    `  attention mass dropped: mean ${pct(r.psa.droppedMean)}, worst ${pct(r.psa.droppedMax)} (estimated worst ${pct(r.psa.estimatedDroppedMax)})`,
    `  output error against dense: worst step ${r.psa.relErrorMax.toExponential(2)}`,
    `  needle page read by every head at ${r.needleFoundSteps} of ${r.steps} steps`,
  ].join('\n');
}
