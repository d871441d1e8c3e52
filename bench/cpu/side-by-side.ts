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
import { Command, InvalidArgumentError } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { attention, info } from '../../lib';
import type { AttentionOptions } from '../../lib';
import { packageRoot } from '../../lib/package-root';
import { multiHeadAttentionModel } from './onnx-model';
import { loadOrt, Ort, OrtSession } from './ort';
import { barChartSvg, BarGroup } from './plot';

const SPARSE: AttentionOptions = { window: 512, globalTokens: 4, blocks: { ratio: 0.25 } };

interface Variant {
  name: string;
  /** One timed call; returns the output (for the accuracy check) and the density. */
  run(): Promise<{ output: Float32Array; density: number }>;
  release?(): Promise<void>;
}

function intList(value: string): number[] {
  const list = value.split(',').map((s) => Number(s.trim()));
  if (!list.length || list.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new InvalidArgumentError('expected comma-separated integers >= 1');
  return list;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Seeded uniform values in [-1, 1) (mulberry32). */
function random(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

function relFrob(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

async function ortVariant(ort: Ort, q: Float32Array, k: Float32Array, v: Float32Array, dims: number[], heads: number, headDim: number, threads: number): Promise<Variant> {
  const session: OrtSession = await ort.InferenceSession.create(multiHeadAttentionModel(dims[0], dims[1], heads, headDim, true), {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
  const feeds = { q: new ort.Tensor('float32', q, dims), k: new ort.Tensor('float32', k, dims), v: new ort.Tensor('float32', v, dims) };
  return {
    name: 'onnxruntime MultiHeadAttention',
    run: async () => ({ output: (await session.run(feeds)).out.data, density: 1 }),
    release: () => session.release(),
  };
}

function psaVariant(name: string, q: Float32Array, k: Float32Array, v: Float32Array, options: AttentionOptions): Variant {
  return {
    name,
    run: async () => {
      const r = await attention(q, k, v, options);
      return { output: r.output, density: r.stats.density };
    },
  };
}

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
    const n = o.heads * seq * o.dim;
    const [q, k, v] = [random(n, 1), random(n, 2), random(n, 3)];
    const dims = [1, seq, o.heads * o.dim];
    const shape = { batch: 1, heads: o.heads, seqQ: seq, headDim: o.dim, layout: 'bnhd' as const };
    for (const threads of o.threads) {
      const variants: Variant[] = [];
      if (ort) variants.push(await ortVariant(ort, q, k, v, dims, o.heads, o.dim, threads));
      variants.push(psaVariant('psa cpu dense', q, k, v, { shape, causal: true, backend: 'cpu', threads }));
      variants.push(psaVariant('psa cpu sparse', q, k, v, { shape, causal: true, backend: 'cpu', threads, ...SPARSE }));
      if (withJs && threads === 1) {
        variants.push(psaVariant('psa js dense', q, k, v, { shape, causal: true, backend: 'js' }));
        variants.push(psaVariant('psa js sparse', q, k, v, { shape, causal: true, backend: 'js', ...SPARSE }));
      }
      const times = variants.map(() => [] as number[]);
      const results: { output: Float32Array; density: number }[] = [];
      for (const x of variants) results.push(await x.run()); // warm-up, and the outputs compared below
      for (let r = 0; r < o.runs; r++) {
        for (let i = 0; i < variants.length; i++) {
          const t0 = process.hrtime.bigint();
          await variants[i].run();
          times[i].push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
      }
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
