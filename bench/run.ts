/**
 * Throughput of dense and sparse attention (not a test). For each sequence length: dense
 * causal attention, sparse with window 512 + 4 sinks + blocks { ratio: 0.25 }, and a
 * progressive variant ({ progressive: 0.9 }, estimate 'bound'), each the median of N timed runs
 * after warm-up. GFLOP/s counts the dense-equivalent work, 4 * D flops per causally allowed
 * (query, key) pair, for every variant, so sparse numbers read as "effective" throughput; the
 * sparse/dense time ratio is printed beside the density so that one can see whether time
 * follows density. Inputs are the demo's synthetic long-context case (topic segments and a
 * needle), so that the progressive rule has something to adapt to. Sparse times include block
 * selection. Writes JSON to bench/results/reference.json (see --out).
 *
 *   npm run bench -- --lengths 512,1024 --runs 5 --heads 1
 */
import { Command, InvalidArgumentError } from 'commander';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { attention, info, Tensor } from '../lib';
import type { AttentionOptions, AttentionResult, BackendName } from '../lib';
import { syntheticCase } from '../lib/demo';
import { backwardBench } from './backward';
import { cpuGoals } from './cpu/goals';
import { sideBySide } from './cpu/side-by-side';
import { decodeBench } from './decode';

interface Variant {
  name: string;
  options: AttentionOptions;
}

const VARIANTS: Variant[] = [
  { name: 'dense', options: {} },
  { name: 'sparse ratio 0.25', options: { window: 512, globalTokens: 4, blocks: { ratio: 0.25 } } },
  { name: 'sparse progressive 0.9', options: { window: 512, globalTokens: 4, blocks: { progressive: 0.9 }, estimate: 'bound' } },
];

interface Row {
  seq: number;
  variant: string;
  options: AttentionOptions;
  backend: string;
  /** Median of the timed runs, milliseconds. */
  medianMs: number;
  /** Fastest timed run, milliseconds (less sensitive to a busy machine than the median). */
  minMs: number;
  timesMs: number[];
  /** Dense-equivalent GFLOP/s: 4 * D * causally allowed pairs * batch * heads / median time. */
  gflops: number;
  density: number;
  /** This variant's median time over dense's at the same length. */
  timeRatio: number;
  blocksVisited: number;
  blocksDense: number;
}

function intList(value: string): number[] {
  const list = value.split(',').map((s) => Number(s.trim()));
  if (list.length === 0 || list.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new InvalidArgumentError('expected comma-separated integers >= 1');
  return list;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected an integer >= 1');
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected an integer >= 0');
  return n;
}

/** Causally allowed (query, key) pairs of one head, bottom-right aligned (query i sits at key i + seqK - seqQ). */
function causalPairs(seqQ: number, seqK: number): number {
  let pairs = 0;
  for (let i = 0; i < seqQ; i++) pairs += Math.max(0, Math.min(seqK, i + seqK - seqQ + 1));
  return pairs;
}

/** q, k, v uploaded once as float16 device tensors, so that timed calls do no host copies. */
async function deviceInputs(c: { q: Float32Array; k: Float32Array; v: Float32Array }, dims: number[], location: 'cuda' | 'cuda-emu') {
  const up = (x: Float32Array) => Tensor.upload(x, dims, { type: 'float16', location });
  return { q: await up(c.q), k: await up(c.k), v: await up(c.v) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** bench/results/reference.json under the package root (found upward from this file). */
function defaultOut(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file) && (JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name === 'psa-attention') {
      return join(dir, 'bench', 'results', 'reference.json');
    }
  }
  return resolve('bench', 'results', 'reference.json');
}

async function main(): Promise<void> {
  if (process.argv[2] === 'cpu-vs-ort') return sideBySide(process.argv.slice(3));
  if (process.argv[2] === 'decode') return decodeBench(process.argv.slice(3));
  if (process.argv[2] === 'cpu-goals') return cpuGoals(process.argv.slice(3));
  if (process.argv[2] === 'backward') return backwardBench(process.argv.slice(3));
  const cmd = new Command('bench')
    .description('dense vs sparse attention throughput (dense-equivalent GFLOP/s)')
    .option('--lengths <list>', 'sequence lengths', intList, [512, 1024, 2048, 4096])
    .option('--heads <n>', 'heads (batch 1)', positiveInt, 1)
    .option('--dim <n>', 'head dimension', positiveInt, 64)
    .option('--runs <n>', 'timed runs per case (median reported)', positiveInt, 5)
    .option('--warmup <n>', 'untimed runs per case first', nonNegativeInt, 1)
    .option('--backend <name>', 'backend: auto, js, cpu, cuda, cuda-emu', 'auto')
    .option('--device-tensors', 'with cuda/cuda-emu: upload q, k, v once as float16 tensors and time the device call alone (no host copies)')
    .option('--seed <n>', 'PRNG seed', positiveInt, 1)
    .option('--out <file>', 'JSON output file', defaultOut())
    .parse(process.argv);
  const o = cmd.opts<{ lengths: number[]; heads: number; dim: number; runs: number; warmup: number; backend: BackendName; seed: number; out: string; deviceTensors?: boolean }>();
  // Each backend keeps its own results file unless --out says otherwise.
  if (o.out === defaultOut() && o.backend !== 'auto' && o.backend !== 'js') o.out = join(dirname(o.out), `${o.backend}.json`);
  if (o.deviceTensors && o.backend !== 'cuda' && o.backend !== 'cuda-emu') throw new InvalidArgumentError('--device-tensors needs --backend cuda or cuda-emu');

  const rows: Row[] = [];
  const header = `${'seq'.padStart(6)}  ${'variant'.padEnd(24)} ${'median ms'.padStart(10)} ${'best ms'.padStart(8)} ${'GFLOP/s'.padStart(8)} ${'density'.padStart(8)} ${'time/dense'.padStart(10)}  tiles`;
  console.log(`psa bench: batch 1, heads ${o.heads}, head dim ${o.dim}, causal, median of ${o.runs} (+${o.warmup} warm-up), backend ${o.backend}`);
  console.log('GFLOP/s = dense-equivalent work (4*D per causally allowed pair) / time; sparse times include block selection\n');
  // Let V8 optimize every path before anything is timed (one warm-up per case is not enough for the first length).
  {
    const seq = Math.min(...o.lengths, 512);
    const c = syntheticCase(1, seq, o.dim, o.seed + 1);
    for (let r = 0; r < 3; r++) {
      for (const variant of VARIANTS) {
        await attention(c.q, c.k, c.v, { shape: { batch: 1, heads: 1, seqQ: seq, headDim: o.dim }, causal: true, backend: o.backend, ...variant.options });
      }
    }
  }
  console.log(header);
  for (const seq of o.lengths) {
    const host = syntheticCase(o.heads, seq, o.dim, o.seed);
    const c = o.deviceTensors ? await deviceInputs(host, [1, o.heads, seq, o.dim], o.backend as 'cuda' | 'cuda-emu') : host;
    const flops = 4 * o.dim * causalPairs(seq, seq) * o.heads;
    let denseMs = NaN;
    for (const variant of VARIANTS) {
      const options: AttentionOptions = { shape: { batch: 1, heads: o.heads, seqQ: seq, headDim: o.dim }, causal: true, backend: o.backend, ...variant.options };
      const call = async () => {
        const r = await (attention as (q: unknown, k: unknown, v: unknown, o: AttentionOptions) => Promise<AttentionResult>)(c.q, c.k, c.v, options);
        if (r.output instanceof Tensor) r.output.dispose();
        return r;
      };
      for (let w = 0; w < o.warmup; w++) await call();
      const times: number[] = [];
      let last: AttentionResult | null = null;
      for (let r = 0; r < o.runs; r++) {
        const t0 = process.hrtime.bigint();
        last = await call();
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      const ms = median(times);
      if (variant.name === 'dense') denseMs = ms;
      const row: Row = {
        seq, variant: variant.name, options: variant.options, backend: last!.backend,
        medianMs: ms, minMs: Math.min(...times), timesMs: times, gflops: flops / (ms * 1e6), density: last!.stats.density, timeRatio: ms / denseMs,
        blocksVisited: last!.stats.blocksVisited, blocksDense: last!.stats.blocksDense,
      };
      rows.push(row);
      console.log(
        `${String(seq).padStart(6)}  ${variant.name.padEnd(24)} ${ms.toFixed(1).padStart(10)} ${row.minMs.toFixed(1).padStart(8)} ${row.gflops.toFixed(2).padStart(8)} ` +
          `${row.density.toFixed(3).padStart(8)} ${row.timeRatio.toFixed(3).padStart(10)}  ${row.blocksVisited}/${row.blocksDense}`,
      );
    }
    if (c !== host) for (const t of [c.q, c.k, c.v] as Tensor[]) t.dispose();
  }

  const i = info();
  const report = {
    package: 'psa-attention', version: i.version, node: i.node, platform: i.platform, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length,
    date: new Date().toISOString(),
    config: { batch: 1, heads: o.heads, headDim: o.dim, causal: true, runs: o.runs, warmup: o.warmup, backend: o.backend, deviceTensors: !!o.deviceTensors, seed: o.seed, data: 'syntheticCase (lib/demo.ts)' },
    flopsRule: '4 * headDim * causally allowed (query, key) pairs * batch * heads, the same dense-equivalent count for every variant',
    results: rows,
  };
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
  console.log(`\nwrote ${o.out}`);
}

main().catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  console.error(e && typeof e.code === 'string' && e.code.startsWith('ERR_') ? `${e.code}: ${e.message}` : err);
  process.exitCode = 1;
});
