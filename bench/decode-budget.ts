/**
 * How many pages a decode step reads for how much attention mass it drops (not a test): the
 * demo's synthetic long context (topic segments and a planted needle), one query per head at
 * three positions (the last one a needle row), for each page estimate, page size and
 * progressive threshold τ. The exact dropped share of a row is 1 - exp(lse_sparse - lse_dense)
 * (exact softmax, no top-k), so it is measured, not estimated. Beside the estimates, the floor:
 * the fewest pages per row that exact page masses would need (decode-floor.ts). Writes JSON and an SVG plot of
 * pages read against dropped mass; the defaults of decode come from this table (docs/decode.md).
 *
 *   npm run build && node dist/bench/decode-budget.js --seq 16384
 */
import { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { decode, KvCache } from '../lib';
import type { DecodeOptions } from '../lib';
import { syntheticCase } from '../lib/demo';
import { pageFloor } from './decode-floor';
import { lineChart } from './svg-plot';

interface Row {
  estimate: string;
  pageSize: number;
  tau: number;
  pagesRead: number;
  droppedMean: number;
  droppedMax: number;
  estimatedMax: number;
}

async function main(): Promise<void> {
  const cmd = new Command()
    .option('--seq <n>', 'context length', (x) => parseInt(x, 10), 16384)
    .option('--heads <n>', 'heads', (x) => parseInt(x, 10), 8)
    .option('--dim <n>', 'head dim', (x) => parseInt(x, 10), 64)
    .option('--out <dir>', 'output folder', 'bench/results')
    .parse();
  const o = cmd.opts<{ seq: number; heads: number; dim: number; out: string }>();
  const { seq: N, heads: H, dim: D } = o;
  const c = syntheticCase(H, N, D, 1, true);
  // Three sequences: prefixes of the context ending at 50%, 75% and 100% (the needle rows are at the end).
  const lengths = [Math.floor(N / 2), Math.floor((3 * N) / 4), N];
  const prefix = (x: Float32Array, L: number) => {
    const out = new Float32Array(H * L * D);
    for (let h = 0; h < H; h++) out.set(x.subarray(h * N * D, (h * N + L) * D), h * L * D);
    return out;
  };
  const q = new Float32Array(lengths.length * H * D);
  lengths.forEach((L, s) => {
    for (let h = 0; h < H; h++) q.set(c.q.subarray((h * N + L - 1) * D, (h * N + L) * D), (s * H + h) * D);
  });
  const base: DecodeOptions = { heads: H, window: 512, globalTokens: 4, returnLse: true };
  const rows: Row[] = [];
  for (const pageSize of [16, 32, 64]) {
    const cache = await KvCache.create({ batch: lengths.length, kvHeads: H, headDim: D, capacity: N, pageSize });
    for (let s = 0; s < lengths.length; s++) await cache.append(prefix(c.k, lengths[s]), prefix(c.v, lengths[s]), { sequences: [s] });
    const dense = await decode(q, cache, { heads: H, returnLse: true });
    for (const estimate of ['moment', 'mean', 'bound'] as const) {
      for (const tau of [0.8, 0.9, 0.95, 0.99, 0.999]) {
        const r = await decode(q, cache, { ...base, blocks: { progressive: tau }, estimate });
        const dropped = Array.from(r.lse!, (l, i) => 1 - Math.exp(l - dense.lse![i]));
        const row: Row = {
          estimate, pageSize, tau,
          pagesRead: r.stats.pagesRead / r.stats.pagesReadDense,
          droppedMean: dropped.reduce((a, b) => a + b, 0) / dropped.length,
          droppedMax: Math.max(...dropped),
          estimatedMax: r.stats.droppedMass.max,
        };
        rows.push(row);
        process.stdout.write(`pages ${String(pageSize).padStart(2)}  ${estimate.padEnd(6)}  τ ${tau.toFixed(3)}  read ${(100 * row.pagesRead).toFixed(1).padStart(5)}%  dropped mean ${(100 * row.droppedMean).toFixed(2).padStart(6)}%  max ${(100 * row.droppedMax).toFixed(2).padStart(6)}%  (estimated max ${(100 * row.estimatedMax).toFixed(2)}%)\n`);
      }
    }
    cache.dispose();
    for (const tau of [0.8, 0.9, 0.95, 0.99, 0.999]) {
      const f = pageFloor({ q: c.q, k: c.k, heads: H, seq: N, dim: D, lengths, window: 512, sinks: 4, pageSize }, tau);
      const row: Row = { estimate: 'floor', pageSize, tau, ...f, estimatedMax: 1 - tau };
      rows.push(row);
      process.stdout.write(`pages ${String(pageSize).padStart(2)}  floor   τ ${tau.toFixed(3)}  read ${(100 * row.pagesRead).toFixed(1).padStart(5)}%  dropped mean ${(100 * row.droppedMean).toFixed(2).padStart(6)}%  max ${(100 * row.droppedMax).toFixed(2).padStart(6)}%  (exact page masses)\n`);
    }
  }
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'decode-budget.json'), JSON.stringify({ seq: N, heads: H, dim: D, lengths, window: 512, globalTokens: 4, rows }, null, 2));
  // Every estimate at the default page size, 'moment' at each size, and the floor (exact page masses).
  const plotted = rows.filter((r) => r.pageSize === 32 || r.estimate === 'moment');
  const series = [...new Set(plotted.map((r) => `${r.estimate}, pages of ${r.pageSize}`))].map((name) => ({
    name,
    points: plotted.filter((r) => `${r.estimate}, pages of ${r.pageSize}` === name).map((r) => [100 * r.pagesRead, 100 * r.droppedMean] as [number, number]),
  }));
  writeFileSync(join(out, 'decode-budget.svg'), lineChart(series, {
    title: `Decode at ${N} tokens: pages read vs attention mass dropped (τ 0.8 .. 0.999)`, xLabel: 'pages read (% of dense)', yLabel: 'mass dropped, mean over rows (%)',
  }));
  process.stdout.write(`wrote ${join(out, 'decode-budget.json')} and decode-budget.svg\n`);
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exit(1);
});
