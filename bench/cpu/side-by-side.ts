/**
 * `npm run bench -- cpu-vs-ort`: the cpu backend beside onnxruntime-node's com.microsoft
 * MultiHeadAttention (`unidirectional` for causal) on the same float32 inputs ([batch, seq,
 * heads * headDim], psa's `bnhd`), in the same process, at the same thread count. Each round
 * times every variant once, in turn, so that a machine getting busier slows them alike; the
 * median of the rounds is reported. Without onnxruntime-node it says why and compares with
 * the js backend instead. Writes JSON and an SVG bar chart.
 *
 *   npm run bench -- cpu-vs-ort --lengths 2048,4096 --threads 1,2 --runs 3
 */
import { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { info } from '../../lib';
import type { AttentionOptions } from '../../lib';
import { packageRoot } from '../../lib/package-root';
import { loadOrt } from './ort';
import { barChartSvg, BarGroup } from './plot';
import { inputsOf, interleaved, intList, median, ortVariant, psaVariant, relFrob, Variant } from './variants';

const SPARSE: AttentionOptions = { window: 512, globalTokens: 4, blocks: { ratio: 0.25 } };

export async function sideBySide(argv: string[]): Promise<void> {
  const root = packageRoot();
  const cmd = new Command('bench cpu-vs-ort')
    .option('--lengths <list>', 'sequence lengths', intList, [2048, 4096])
    .option('--threads <list>', 'thread counts (both sides)', intList, [1, 2])
    .option('--heads <n>', 'heads (batch 1)', (s) => intList(s)[0], 8)
    .option('--dim <n>', 'head dimension', (s) => intList(s)[0], 64)
    .option('--runs <n>', 'rounds (median reported)', (s) => intList(s)[0], 3)
    .option('--with-js', 'also time the js backend (slow), at 1 thread')
    .option('--out <file>', 'JSON output; the SVG goes beside it', join(root, 'bench', 'results', 'cpu-vs-onnxruntime.json'))
    .parse(argv, { from: 'user' });
  const o = cmd.opts<{ lengths: number[]; threads: number[]; heads: number; dim: number; runs: number; withJs?: boolean; out: string }>();
  const loaded = loadOrt(root);
  if ('reason' in loaded) console.log(`${loaded.reason}: comparing with the js backend instead`);
  const ort = 'ort' in loaded ? loaded.ort : null;
  const withJs = o.withJs || !ort;

  console.log(`psa bench cpu-vs-ort: batch 1, heads ${o.heads}, head dim ${o.dim}, causal, median of ${o.runs} interleaved rounds (+1 warm-up)`);
  console.log(`cpu backend: ${info().backends.find((b) => b.name === 'cpu')!.reason}${ort ? `; onnxruntime-node from ${(loaded as { path: string }).path}` : ''}\n`);
  const rows: { seq: number; threads: number; variant: string; medianMs: number; timesMs: number[]; density: number; relErrorVsFirst: number | null }[] = [];
  for (const seq of o.lengths) {
    const [q, k, v] = inputsOf(seq, o.heads, o.dim);
    const shape = { batch: 1, heads: o.heads, seqQ: seq, headDim: o.dim, layout: 'bnhd' as const };
    for (const threads of o.threads) {
      const variants: Variant[] = [];
      if (ort) variants.push(await ortVariant('onnxruntime MultiHeadAttention', ort, q, k, v, seq, o.heads, o.dim, true, threads));
      variants.push(psaVariant('psa cpu dense', q, k, v, { shape, causal: true, backend: 'cpu', threads }));
      variants.push(psaVariant('psa cpu sparse', q, k, v, { shape, causal: true, backend: 'cpu', threads, ...SPARSE }));
      if (withJs && threads === 1) {
        variants.push(psaVariant('psa js dense', q, k, v, { shape, causal: true, backend: 'js' }));
        variants.push(psaVariant('psa js sparse', q, k, v, { shape, causal: true, backend: 'js', ...SPARSE }));
      }
      const { first: results, times } = await interleaved(variants, o.runs);
      for (const x of variants) await x.release?.();
      variants.forEach((x, i) => {
        const dense = !x.name.includes('sparse');
        const row = {
          seq, threads, variant: x.name, medianMs: median(times[i]), timesMs: times[i], density: results[i].density,
          relErrorVsFirst: dense && i > 0 ? relFrob(results[i].output, results[0].output) : null,
        };
        rows.push(row);
        const err = row.relErrorVsFirst === null ? '' : `  rel. error vs ${variants[0].name}: ${row.relErrorVsFirst.toExponential(2)}`;
        console.log(`N ${String(seq).padStart(5)}  threads ${threads}  ${x.name.padEnd(32)} ${row.medianMs.toFixed(1).padStart(9)} ms  density ${row.density.toFixed(3)}${err}`);
      });
    }
  }

  const i = info();
  const report = {
    package: 'psa-attention', version: i.version, node: i.node, platform: i.platform, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length,
    date: new Date().toISOString(),
    config: { batch: 1, heads: o.heads, headDim: o.dim, causal: true, layout: 'bnhd', runs: o.runs, interleaved: true, sparse: SPARSE, onnxruntime: ort ? 'onnxruntime-node' : null },
    results: rows,
  };
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
  const groups: BarGroup[] = [];
  for (const seq of o.lengths) {
    for (const threads of o.threads) {
      groups.push({ label: `N ${seq}, ${threads} thread${threads > 1 ? 's' : ''}`, bars: rows.filter((r) => r.seq === seq && r.threads === threads).map((r) => ({ series: r.variant, value: r.medianMs })) });
    }
  }
  const svg = o.out.replace(/\.json$/, '') + '.svg';
  writeFileSync(svg, barChartSvg(`attention forward, B1 H${o.heads} D${o.dim} causal, float32 (${report.cpu})`, 'median ms (lower is better)', groups));
  console.log(`\nwrote ${o.out} and ${svg}`);
}
