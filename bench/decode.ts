/**
 * Decode steps against context length (not a test): `npm run bench -- decode`. For each length,
 * a cache holding the demo's synthetic context (topic segments and a planted needle) twice, one
 * sequence queried with a needle row and one with a topic row; each step decodes one token per
 * sequence, dense and with PSA's page selection (progressive 0.9 / 0.95 / 0.99 and ratio 0.25,
 * window 512, 4 sinks, the 'moment' estimate). Per variant: the median step time, the pages
 * read over a dense step's, and the exact mass dropped (1 - exp(lse - lse_dense)). Writes
 * bench/results/decode.{json,svg}: time per step and pages read against context length.
 *
 *   npm run bench -- decode --lengths 2048,8192,32768,65536 --runs 3
 */
import { Command, InvalidArgumentError } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { decode, KvCache } from '../lib';
import type { DecodeOptions } from '../lib';
import { syntheticCase } from '../lib/demo';
import { lineChart } from './svg-plot';

const VARIANTS: { name: string; options: DecodeOptions }[] = [
  { name: 'dense', options: {} },
  { name: 'progressive 0.9', options: { window: 512, globalTokens: 4, blocks: { progressive: 0.9 } } },
  { name: 'progressive 0.95', options: { window: 512, globalTokens: 4, blocks: { progressive: 0.95 } } },
  { name: 'progressive 0.99', options: { window: 512, globalTokens: 4, blocks: { progressive: 0.99 } } },
  { name: 'ratio 0.25', options: { window: 512, globalTokens: 4, blocks: { ratio: 0.25 } } },
];

interface Row {
  context: number;
  variant: string;
  backend: string;
  medianMs: number;
  /** Pages read over the pages a dense step reads. */
  pagesRead: number;
  droppedMean: number;
  droppedMax: number;
  /** Dense median time over this variant's. */
  speedup: number;
}

function intList(value: string): number[] {
  const list = value.split(',').map((s) => Number(s.trim()));
  if (list.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new InvalidArgumentError('expected comma-separated integers >= 1');
  return list;
}

function positiveInt(value: string): number {
  const [n, ...rest] = intList(value);
  if (rest.length) throw new InvalidArgumentError('expected one integer >= 1');
  return n;
}

export async function decodeBench(argv: string[]): Promise<void> {
  const o = new Command('bench decode')
    .option('--lengths <list>', 'context lengths', intList, [2048, 8192, 32768, 65536])
    .option('--heads <n>', 'heads (one kv head each)', positiveInt, 8)
    .option('--dim <n>', 'head dim', positiveInt, 64)
    .option('--runs <n>', 'timed steps per variant (median)', positiveInt, 3)
    .option('--backend <name>', 'decode backend', 'auto')
    .option('--out <dir>', 'output folder', 'bench/results')
    .parse(argv, { from: 'user' })
    .opts<{ lengths: number[]; heads: number; dim: number; runs: number; backend: DecodeOptions['backend']; out: string }>();
  const { heads: H, dim: D } = o;
  const rows: Row[] = [];
  for (const L of o.lengths) {
    const c = syntheticCase(H, L, D, 1, true);
    const cache = await KvCache.create({ batch: 2, kvHeads: H, headDim: D, capacity: L });
    try {
      await cache.append(c.k, c.v, { sequences: [0] });
      await cache.append(c.k, c.v, { sequences: [1] });
      // Sequence 0 asks with the last row (it carries the needle), sequence 1 with a topic row.
      const q = new Float32Array(2 * H * D);
      const topicRow = Math.max(0, L - c.needleRows - 1);
      for (let h = 0; h < H; h++) {
        q.set(c.q.subarray((h * L + L - 1) * D, (h * L + L) * D), h * D);
        q.set(c.q.subarray((h * L + topicRow) * D, (h * L + topicRow + 1) * D), (H + h) * D);
      }
      let denseMs = 0;
      let denseLse: Float32Array | null = null;
      for (const v of VARIANTS) {
        const times: number[] = [];
        let r = await decode(q, cache, { ...v.options, heads: H, returnLse: true, backend: o.backend }); // warm-up
        for (let t = 0; t < o.runs; t++) {
          const t0 = performance.now();
          r = await decode(q, cache, { ...v.options, heads: H, returnLse: true, backend: o.backend });
          times.push(performance.now() - t0);
        }
        times.sort((a, b) => a - b);
        const medianMs = times[Math.floor(times.length / 2)];
        if (v.name === 'dense') {
          denseMs = medianMs;
          denseLse = r.lse!;
        }
        const dropped = Array.from(r.lse!, (l, i) => 1 - Math.exp(l - denseLse![i]));
        const row: Row = {
          context: L, variant: v.name, backend: r.backend, medianMs,
          pagesRead: r.stats.pagesRead / r.stats.pagesReadDense,
          droppedMean: dropped.reduce((a, b) => a + b, 0) / dropped.length,
          droppedMax: Math.max(...dropped),
          speedup: denseMs / medianMs,
        };
        rows.push(row);
        process.stdout.write(
          `${String(L).padStart(6)}  ${v.name.padEnd(17)} ${row.backend.padEnd(4)} ${medianMs.toFixed(1).padStart(8)} ms/step  ${row.speedup.toFixed(2).padStart(5)}x  ` +
            `pages ${(100 * row.pagesRead).toFixed(1).padStart(5)}%  dropped mean ${(100 * row.droppedMean).toFixed(2)}% max ${(100 * row.droppedMax).toFixed(2)}%\n`,
        );
      }
    } finally {
      cache.dispose();
    }
  }
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'decode.json'), JSON.stringify({ heads: H, dim: D, runs: o.runs, rows }, null, 2));
  const series = (y: (r: Row) => number) =>
    VARIANTS.map((v) => ({ name: v.name, points: rows.filter((r) => r.variant === v.name).map((r) => [Math.log2(r.context), y(r)] as [number, number]) }));
  writeFileSync(join(out, 'decode.svg'), lineChart(series((r) => r.medianMs), {
    title: `Decode step (2 sequences x ${H} heads, d ${D}): time against context length`, xLabel: 'log2 context length', yLabel: 'ms per step (median)',
  }));
  writeFileSync(join(out, 'decode-pages.svg'), lineChart(series((r) => 100 * r.pagesRead), {
    title: 'Decode step: pages read against context length', xLabel: 'log2 context length', yLabel: 'pages read (% of dense)',
  }));
  process.stdout.write(`wrote ${join(out, 'decode.json')}, decode.svg and decode-pages.svg\n`);
}
