/**
 * `npm run bench -- cpu-goals`: the cpu backend's goals (docs/cpu.md#goals) as ratios measured
 * in one run. Every timed variant runs once per round, all rounds interleaved, so that a load
 * that comes and goes slows every side alike; each ratio is a ratio of medians. Peak memory is
 * measured in a child process of its own (its VmHWM). Writes bench/results/cpu-goals.{json,svg}
 * and prints the goal table as markdown.
 *
 *   npm run bench -- cpu-goals [--runs 5] [--sparse-length 16384]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import { info } from '../../lib';
import type { AttentionOptions } from '../../lib';
import { packageRoot } from '../../lib/package-root';
import { loadOrt } from './ort';
import { barChartSvg } from './plot';
import { inputsOf, interleaved, intList, median, ortVariant, psaVariant, relFrob, Variant } from './variants';

const HEADS = 8;
const DIM = 64;
const SEQ = 4096;
const MEMORY_SEQ = 8192;
/** One core's FMA peak on the machine class of the goals (2 x 8-lane FMA per cycle). */
const FMA_PEAK_GFLOPS = 102;
const SPARSE: AttentionOptions = { window: 512, globalTokens: 4, blocks: { ratio: 0.25 } };

interface Goal {
  goal: string;
  target: string;
  measured: number;
  met: boolean;
  detail: string;
}

/** Peak resident memory of a child process that makes one causal call at MEMORY_SEQ (MiB): before the call and at its end. */
function peakMemory(root: string, threads: number): { baselineMiB: number; peakMiB: number } {
  const script = `
    const { attention } = require(${JSON.stringify(join(root, 'dist', 'lib'))});
    const hwm = () => Number(/VmHWM:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
    const n = ${HEADS * MEMORY_SEQ * DIM};
    const [q, k, v] = [1, 2, 3].map((s) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * s) ));
    const baselineMiB = hwm();
    attention(q, k, v, { shape: { batch: 1, heads: ${HEADS}, seqQ: ${MEMORY_SEQ}, headDim: ${DIM}, layout: 'bnhd' }, causal: true, backend: 'cpu', threads: ${threads} })
      .then(() => console.log(JSON.stringify({ baselineMiB, peakMiB: hwm() })));`;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as { baselineMiB: number; peakMiB: number };
}

const fmt = (x: number) => x.toFixed(2);

export async function cpuGoals(argv: string[]): Promise<void> {
  const root = packageRoot();
  const cmd = new Command('bench cpu-goals')
    .option('--runs <n>', 'interleaved rounds (medians reported)', (s) => intList(s)[0], 5)
    .option('--sparse-length <n>', 'sequence length of the sparse goal', (s) => intList(s)[0], 16384)
    .option('--out <file>', 'JSON output; the SVG goes beside it', join(root, 'bench', 'results', 'cpu-goals.json'))
    .parse(argv, { from: 'user' });
  const o = cmd.opts<{ runs: number; sparseLength: number; out: string }>();
  const loaded = loadOrt(root);
  const ort = 'ort' in loaded ? loaded.ort : null;
  if (!ort) console.log(`${(loaded as { reason: string }).reason}: the goals against onnxruntime are not measured`);
  const cpuReason = info().backends.find((b) => b.name === 'cpu')!.reason;
  const loadBefore = loadavg();
  console.log(`psa bench cpu-goals: B1 H${HEADS} D${DIM} float32 bnhd, ${o.runs} interleaved rounds (+1 warm-up), medians`);
  console.log(`cpu backend: ${cpuReason}; load average ${loadBefore.map(fmt).join(' ')}\n`);

  const [q, k, v] = inputsOf(SEQ, HEADS, DIM);
  const [qs, ks, vs] = inputsOf(o.sparseLength, HEADS, DIM);
  const shape = { batch: 1, heads: HEADS, seqQ: SEQ, headDim: DIM, layout: 'bnhd' as const };
  const longShape = { ...shape, seqQ: o.sparseLength };
  const cpu = (name: string, options: Omit<AttentionOptions, 'shape' | 'backend'>, long = false) =>
    psaVariant(name, long ? qs : q, long ? ks : k, long ? vs : v, { shape: long ? longShape : shape, backend: 'cpu', threads: 1, ...options });
  const variants: Variant[] = [];
  if (ort) {
    variants.push(await ortVariant('ort non-causal', ort, q, k, v, SEQ, HEADS, DIM, false, 1));
    variants.push(await ortVariant('ort causal', ort, q, k, v, SEQ, HEADS, DIM, true, 1));
  }
  variants.push(
    cpu('cpu non-causal', { causal: false }),
    cpu('cpu causal', { causal: true }),
    cpu('cpu causal, 2 threads', { causal: true, threads: 2 }),
    cpu('cpu causal, topKRatio 0.25', { causal: true, topKRatio: 0.25 }),
    cpu(`cpu causal N ${o.sparseLength}`, { causal: true }, true),
    cpu(`cpu sparse N ${o.sparseLength}`, { causal: true, ...SPARSE }, true),
  );
  const { first, times } = await interleaved(variants, o.runs, (r) => console.log(`round ${r + 1}/${o.runs} done`));
  for (const x of variants) await x.release?.();
  const ms = (name: string) => median(times[variants.findIndex((x) => x.name === name)]);
  const result = (name: string) => first[variants.findIndex((x) => x.name === name)];
  const loadAfter = loadavg();

  const goals: Goal[] = [];
  const nonCausalFlops = 4 * DIM * SEQ * SEQ * HEADS;
  const gflops = nonCausalFlops / (ms('cpu non-causal') * 1e6);
  const peakShare = `${gflops.toFixed(1)} GFLOP/s, ${((100 * gflops) / FMA_PEAK_GFLOPS).toFixed(0)}% of ${FMA_PEAK_GFLOPS}`;
  if (ort) {
    const x = ms('ort non-causal') / ms('cpu non-causal');
    const err = relFrob(result('cpu non-causal').output, result('ort non-causal').output);
    goals.push({ goal: `dense non-causal N ${SEQ}, 1 thread: throughput over onnxruntime's`, target: '>= 1.2x', measured: x, met: x >= 1.2,
      detail: `${ms('cpu non-causal').toFixed(0)} ms (${peakShare}) vs ${ms('ort non-causal').toFixed(0)} ms; outputs within ${err.toExponential(1)}` });
    const y = ms('ort causal') / ms('cpu causal');
    goals.push({ goal: `dense causal N ${SEQ}, 1 thread: faster than onnxruntime (unidirectional)`, target: '>= 2.4x', measured: y, met: y >= 2.4,
      detail: `${ms('cpu causal').toFixed(0)} ms vs ${ms('ort causal').toFixed(0)} ms` });
  } else {
    goals.push({ goal: `dense non-causal N ${SEQ}, 1 thread: throughput`, target: 'onnxruntime absent', measured: gflops, met: false, detail: peakShare });
  }
  const t = ms('cpu causal') / ms('cpu causal, 2 threads');
  goals.push({ goal: `dense causal N ${SEQ}: 2 threads over 1`, target: '>= 1.8x', measured: t, met: t >= 1.8,
    detail: `${ms('cpu causal, 2 threads').toFixed(0)} ms vs ${ms('cpu causal').toFixed(0)} ms` });
  const density = result(`cpu sparse N ${o.sparseLength}`).density;
  const s = ms(`cpu sparse N ${o.sparseLength}`) / ms(`cpu causal N ${o.sparseLength}`) / density;
  goals.push({ goal: `sparse (window 512 + 4 sinks + ratio 0.25, causal) N ${o.sparseLength}: time / dense time / density`, target: '<= 1.15', measured: s, met: s <= 1.15,
    detail: `${ms(`cpu sparse N ${o.sparseLength}`).toFixed(0)} ms vs ${ms(`cpu causal N ${o.sparseLength}`).toFixed(0)} ms at density ${density.toFixed(3)}` });
  const topK = ms('cpu causal, topKRatio 0.25') / ms('cpu causal');
  goals.push({ goal: `topKRatio 0.25 (causal N ${SEQ}): cost over the same call without it`, target: '<= 1.5x', measured: topK, met: topK <= 1.5,
    detail: `${ms('cpu causal, topKRatio 0.25').toFixed(0)} ms vs ${ms('cpu causal').toFixed(0)} ms` });
  const memory = peakMemory(root, 2);
  goals.push({ goal: `peak RSS, causal N ${MEMORY_SEQ} B1 H${HEADS} D${DIM} (child process, 2 threads)`, target: '<= 300 MiB', measured: memory.peakMiB, met: memory.peakMiB <= 300,
    detail: `${memory.baselineMiB.toFixed(0)} MiB with the inputs made, before the call` });

  const i = info();
  const report = {
    package: 'psa-attention', version: i.version, node: i.node, platform: i.platform, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, cpuBackend: cpuReason,
    date: new Date().toISOString(), loadAverage: { before: loadBefore, after: loadAfter },
    config: { batch: 1, heads: HEADS, headDim: DIM, layout: 'bnhd', runs: o.runs, interleaved: true, sparse: SPARSE, sparseLength: o.sparseLength, onnxruntime: ort ? (loaded as { path: string }).path : null },
    variants: variants.map((x, n) => ({ name: x.name, medianMs: median(times[n]), timesMs: times[n], density: first[n].density })),
    goals,
  };
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
  const svg = o.out.replace(/\.json$/, '') + '.svg';
  const groups = [
    { label: `N ${SEQ} non-causal`, names: ['ort non-causal', 'cpu non-causal'] },
    { label: `N ${SEQ} causal`, names: ['ort causal', 'cpu causal', 'cpu causal, 2 threads', 'cpu causal, topKRatio 0.25'] },
    { label: `N ${o.sparseLength} causal`, names: [`cpu causal N ${o.sparseLength}`, `cpu sparse N ${o.sparseLength}`] },
  ].map((g) => ({ label: g.label, bars: g.names.filter((n) => variants.some((x) => x.name === n)).map((n) => ({ series: n.replace(/ N \d+$/, ''), value: ms(n) })) }));
  writeFileSync(svg, barChartSvg(`cpu goals, B1 H${HEADS} D${DIM} float32, 1 thread unless said (${report.cpu})`, 'median ms (lower is better)', groups));

  console.log(`\nload average ${loadBefore.map(fmt).join(' ')} before, ${loadAfter.map(fmt).join(' ')} after\n`);
  console.log('| goal | target | measured | met | detail |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const g of goals) {
    const value = g.target.includes('MiB') ? `${g.measured.toFixed(0)} MiB` : g.target.startsWith('onnx') ? `${g.measured.toFixed(1)} GFLOP/s` : `${g.measured.toFixed(2)}${g.target.includes('x') ? 'x' : ''}`;
    console.log(`| ${g.goal} | ${g.target} | ${value} | ${g.met ? 'yes' : 'no'} | ${g.detail} |`);
  }
  console.log(`\nwrote ${o.out} and ${svg}`);
}
