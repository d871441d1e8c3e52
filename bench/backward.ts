/**
 * `npm run bench -- backward`: the backward pass against the forward, dense and sparse
 * (window 512 + 4 sinks + blocks { ratio: 0.25 }, causal), per backend. Each round times, in
 * turn, every (variant, pass) of a length once, so that a machine getting busier slows them
 * alike; medians of the rounds are reported. The forward is timed with `saveForBackward`, the
 * backward from its result. Printed per row: forward and backward ms, backward/forward, the
 * density, and for sparse the backward's time over dense's divided by the density (the goal is
 * at most 1.2). Writes bench/results/backward.{json,svg}.
 *
 *   npm run bench -- backward --lengths 4096,8192 --backends cpu,js --runs 3
 */
import { Command, InvalidArgumentError } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { attention, attentionBackward, info } from '../lib';
import type { AttentionOptions, AttentionResult, BackendName } from '../lib';
import { syntheticCase } from '../lib/demo';
import { packageRoot } from '../lib/package-root';
import { lineChart } from './svg-plot';

const VARIANTS: { name: 'dense' | 'sparse'; options: AttentionOptions }[] = [
  { name: 'dense', options: {} },
  { name: 'sparse', options: { window: 512, globalTokens: 4, blocks: { ratio: 0.25 } } },
];

interface Row {
  backend: string;
  seq: number;
  variant: string;
  forwardMs: number;
  backwardMs: number;
  /** Backward time over forward time. */
  backwardOverForward: number;
  density: number;
  /** Sparse: backward time over dense backward time, divided by the density (goal <= 1.2). */
  backwardRatioOverDensity: number | null;
  forwardRatioOverDensity: number | null;
  forwardTimesMs: number[];
  backwardTimesMs: number[];
}

function list<T>(parse: (s: string) => T): (value: string) => T[] {
  return (value) => value.split(',').map((s) => parse(s.trim()));
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected an integer >= 1');
  return n;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = process.hrtime.bigint();
  const r = await f();
  return [r, Number(process.hrtime.bigint() - t0) / 1e6];
}

export async function backwardBench(argv: string[]): Promise<void> {
  const cmd = new Command('bench backward')
    .description('backward time against forward time, dense and sparse')
    .option('--lengths <list>', 'sequence lengths', list(positiveInt), [4096, 8192])
    .option('--backends <list>', 'backends (those unavailable are reported and skipped)', list((s) => s as BackendName), ['cpu', 'js'] as BackendName[])
    .option('--heads <n>', 'heads (batch 1)', positiveInt, 8)
    .option('--dim <n>', 'head dimension', positiveInt, 64)
    .option('--runs <n>', 'timed rounds (medians reported)', positiveInt, 3)
    .option('--threads <n>', 'cpu backend threads (default: the machine\'s)', positiveInt)
    .option('--out <file>', 'JSON output (the SVG goes beside it)', join(packageRoot(), 'bench', 'results', 'backward.json'))
    .parse(argv, { from: 'user' });
  const o = cmd.opts<{ lengths: number[]; backends: BackendName[]; heads: number; dim: number; runs: number; threads?: number; out: string }>();
  const available = new Map(info().backends.map((b) => [b.name as string, b]));
  const rows: Row[] = [];
  console.log(`psa bench backward: batch 1, heads ${o.heads}, head dim ${o.dim}, causal, median of ${o.runs} interleaved rounds; load average ${loadavg()[0].toFixed(1)} on ${cpus().length} cores\n`);
  console.log(`${'backend'.padEnd(8)} ${'seq'.padStart(6)}  ${'variant'.padEnd(7)} ${'fwd ms'.padStart(9)} ${'bwd ms'.padStart(9)} ${'bwd/fwd'.padStart(8)} ${'density'.padStart(8)} ${'bwd ratio/density'.padStart(18)} ${'fwd ratio/density'.padStart(18)}`);
  for (const backend of o.backends) {
    const status = available.get(backend);
    if (!status?.available) {
      console.log(`${backend.padEnd(8)} skipped: ${status ? status.reason : 'unknown backend'}`);
      continue;
    }
    for (const seq of o.lengths) {
      const c = syntheticCase(o.heads, seq, o.dim, 1);
      const dO = syntheticCase(o.heads, seq, o.dim, 2).q;
      const times = VARIANTS.map(() => ({ forward: [] as number[], backward: [] as number[], density: 0 }));
      for (let round = 0; round < o.runs; round++) {
        for (const [i, variant] of VARIANTS.entries()) {
          const options: AttentionOptions = {
            shape: { batch: 1, heads: o.heads, seqQ: seq, headDim: o.dim }, causal: true, backend, saveForBackward: true, ...variant.options,
            ...(backend === 'cpu' && o.threads ? { threads: o.threads } : {}),
          };
          const [fwd, fms] = await timed<AttentionResult>(() => attention(c.q, c.k, c.v, options) as Promise<AttentionResult>);
          const [, bms] = await timed(() => attentionBackward(dO, c.q, c.k, c.v, fwd, { backend }));
          times[i].forward.push(fms);
          times[i].backward.push(bms);
          times[i].density = fwd.stats.density;
        }
      }
      const dense = { forward: median(times[0].forward), backward: median(times[0].backward) };
      for (const [i, variant] of VARIANTS.entries()) {
        const t = times[i];
        const forwardMs = median(t.forward);
        const backwardMs = median(t.backward);
        const sparse = variant.name === 'sparse';
        const row: Row = {
          backend, seq, variant: variant.name, forwardMs, backwardMs, backwardOverForward: backwardMs / forwardMs, density: t.density,
          backwardRatioOverDensity: sparse ? backwardMs / dense.backward / t.density : null,
          forwardRatioOverDensity: sparse ? forwardMs / dense.forward / t.density : null,
          forwardTimesMs: t.forward, backwardTimesMs: t.backward,
        };
        rows.push(row);
        const r = (x: number | null) => (x === null ? '' : x.toFixed(2)).padStart(18);
        console.log(
          `${backend.padEnd(8)} ${String(seq).padStart(6)}  ${variant.name.padEnd(7)} ${forwardMs.toFixed(0).padStart(9)} ${backwardMs.toFixed(0).padStart(9)} ` +
            `${row.backwardOverForward.toFixed(2).padStart(8)} ${t.density.toFixed(3).padStart(8)} ${r(row.backwardRatioOverDensity)} ${r(row.forwardRatioOverDensity)}`,
        );
      }
    }
  }
  const i = info();
  const report = {
    package: 'psa-attention', version: i.version, node: i.node, platform: i.platform, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length,
    loadAverage: loadavg(), date: new Date().toISOString(),
    config: { batch: 1, heads: o.heads, headDim: o.dim, causal: true, runs: o.runs, threads: o.threads ?? null, sparse: VARIANTS[1].options, data: 'syntheticCase (lib/demo.ts)' },
    goal: 'sparse backward time / dense backward time <= 1.2 x density',
    results: rows,
  };
  mkdirSync(join(o.out, '..'), { recursive: true });
  writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
  const sparseRows = rows.filter((r) => r.variant === 'sparse');
  const series = [...new Set(sparseRows.map((r) => r.backend))].flatMap((b) => [
    { name: `${b} backward`, points: sparseRows.filter((r) => r.backend === b).map((r) => [r.seq, r.backwardRatioOverDensity!] as [number, number]) },
    { name: `${b} forward`, points: sparseRows.filter((r) => r.backend === b).map((r) => [r.seq, r.forwardRatioOverDensity!] as [number, number]) },
  ]);
  series.push({ name: 'goal 1.2', points: o.lengths.map((n) => [n, 1.2] as [number, number]) });
  const svg = o.out.replace(/\.json$/, '') + '.svg';
  writeFileSync(svg, lineChart(series, { title: `sparse time / dense time / density (H${o.heads} D${o.dim}, causal)`, xLabel: 'sequence length', yLabel: '(sparse / dense) / density' }));
  console.log(`\nwrote ${o.out} and ${svg}`);
}
