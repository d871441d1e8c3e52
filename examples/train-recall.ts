/**
 * Train a small attention-only model on associative recall across a long context
 * (examples/recall/task.ts), densely and with the progressive sparsity schedule, and compare
 * final loss, recall accuracy and time per step.
 *
 * Both runs start from the same weights, see the same batches and train in lockstep, one step
 * of each in turn, so the machine's load falls on both alike. The sparse run moves from dense
 * attention to a window, sinks and selected key blocks by `progressiveSchedule`. Final loss and
 * recall are measured on one held-out batch after training, each run with its own final
 * attention (the schedule's end point for the sparse run). Attention and its backward run on
 * the cpu backend where the addon has it, else on js.
 *
 *   npm run example:recall                     # both runs, then a plot in examples/results/
 *   npm run example:recall -- --seed 2 --estimate bound
 */
import { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { progressiveSchedule } from '../lib';
import type { AttentionOptions } from '../lib';
import { lineChart } from '../bench/svg-plot';
import { prng } from '../lib/demo';
import { Attention } from './recall/attention';
import { cosineLearningRate, RecallModel } from './recall/model';
import { selectionRecall } from './recall/selection-recall';
import { makeBatch } from './recall/task';
import type { Task } from './recall/task';

interface Options {
  steps: number;
  seq: number;
  batch: number;
  evalBatch: number;
  seed: number;
  queries: number;
  queryOrder: Task['queryOrder'];
  lr: number; headDim: number; embeddingStd: number;
  weightDecay: number;
  tau?: number;
  ratio?: number;
  window: number;
  sinks: number;
  minBlocks: number;
  blockSize: number;
  queryBlockSize: number;
  estimate: 'mean' | 'bound' | 'moment';
  warmup: number;
  ramp: number;
  out: string;
}

interface StepLog {
  step: number;
  loss: number;
  accuracy: number;
  /** Share of queries whose asked-for key the forward's kept set holds (1 when dense). */
  selectionRecall: number;
  density: number;
  ms: number;
  forwardMs: number;
  backwardMs: number;
  forwardBackend: string;
}

interface Evaluation {
  loss: number;
  accuracy: number;
  selectionRecall: number;
  density: number;
}

const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / Math.max(1, xs.length);

async function main(): Promise<void> {
  const o = new Command()
    .option('--steps <n>', 'training steps per run', (x) => parseInt(x, 10), 1000)
    .option('--seq <n>', 'context length', (x) => parseInt(x, 10), 2048)
    .option('--batch <n>', 'sequences per step', (x) => parseInt(x, 10), 4)
    .option('--eval-batch <n>', 'sequences of the held-out batch the final loss is measured on', (x) => parseInt(x, 10), 32)
    .option('--seed <n>', 'seed', (x) => parseInt(x, 10), 1)
    .option('--queries <n>', 'queries at the end of each sequence', (x) => parseInt(x, 10), 32)
    .option('--query-order <order>', "'random', or 'context' (the queries ask for the pairs in context order)", 'random')
    .option('--lr <x>', 'peak learning rate (cosine decay to a tenth of it over the steps)', parseFloat, 1e-2)
    .option('--head-dim <n>', 'attention head dimension', (x) => parseInt(x, 10), 32)
    .option('--embedding-std <x>', 'standard deviation of the initial embeddings', parseFloat, 0.1)
    .option('--weight-decay <x>', 'decoupled weight decay', parseFloat, 0)
    .option('--tau <x>', 'the progressive block rule instead of --ratio: its threshold at the end of the schedule', parseFloat)
    .option('--ratio <x>', 'the ratio of candidate key blocks kept at the end of the schedule', parseFloat, 0.1)
    .option('--window <n>', 'window at the end of the schedule', (x) => parseInt(x, 10), 16)
    .option('--sinks <n>', 'sink tokens once sparse', (x) => parseInt(x, 10), 4)
    .option('--min-blocks <n>', 'selected key blocks kept at least, per query block', (x) => parseInt(x, 10), 1)
    .option('--block-size <n>', 'key block size of the selection', (x) => parseInt(x, 10), 16)
    .option('--query-block-size <n>', 'query rows per selection (1: per row)', (x) => parseInt(x, 10), 1)
    .option('--estimate <name>', "block estimate: 'mean', 'bound' or 'moment'", 'moment')
    .option('--warmup <x>', 'fraction of the steps the schedule stays dense', parseFloat, 0.5)
    .option('--ramp <x>', 'fraction of the steps the schedule takes from dense to its end point', parseFloat, 0.2)
    .option('--out <dir>', 'where the JSON and the plot go', 'examples/results')
    .parse()
    .opts<Options>();
  const task: Task = { seq: o.seq, pairs: 64, queries: o.queries, keys: 256, values: 32, fillers: 16, queryOrder: o.queryOrder };
  if (!(task.queries >= 1 && task.seq - task.queries >= task.pairs)) throw new Error(`--queries ${task.queries} leaves fewer than ${task.pairs} context positions of --seq ${task.seq} for the pairs`);
  const dims = { model: 32, headDim: o.headDim, embeddingStd: o.embeddingStd };
  const warmupSteps = Math.round(o.steps * o.warmup);
  const rampSteps = Math.round(o.steps * o.ramp);
  const rule = o.tau !== undefined ? { progressive: [1, o.tau] as [number, number] } : { blockRatio: [1, o.ratio!] as [number, number] };
  const schedule = progressiveSchedule({ warmupSteps, rampSteps, curve: 'cosine', ...rule, window: [o.seq, o.window], globalTokens: o.sinks, minBlocks: o.minBlocks });
  const sparse = (step: number): AttentionOptions => {
    const s = schedule(step);
    return Object.keys(s).length ? { ...s, blockSize: o.blockSize, queryBlockSize: o.queryBlockSize, estimate: o.estimate } : {};
  };
  const runs = [
    { name: 'dense', attention: (_: number): AttentionOptions => ({}) },
    { name: 'progressive schedule', attention: sparse },
  ].map((r) => ({ ...r, model: new RecallModel(task, dims, o.seed), data: prng(o.seed + 1), history: [] as StepLog[] }));
  const attn = new Attention();
  const ruleName = o.tau !== undefined ? `progressive tau ${o.tau}` : `ratio ${o.ratio}`;
  process.stdout.write(`${o.steps} steps per run, context ${task.seq}, ${task.pairs} pairs, ${task.queries} queries per sequence, batch ${o.batch}; `
    + `schedule dense to step ${warmupSteps}, then to window ${o.window}, ${o.sinks} sinks, blocks of ${o.blockSize} by ${ruleName} (${o.estimate} estimate, per ${o.queryBlockSize === 1 ? 'query row' : `${o.queryBlockSize} query rows`}) at step ${warmupSteps + rampSteps}\n`);
  for (let step = 1; step <= o.steps; step++) {
    for (const run of runs) {
      const t0 = performance.now();
      const batch = makeBatch(task, o.batch, run.data);
      const r = await run.model.step(batch, run.attention(step), attn, { lr: cosineLearningRate(o.lr, step, o.steps), decay: o.weightDecay });
      const times = attn.take();
      const s: StepLog = {
        step, loss: r.loss, accuracy: r.accuracy, selectionRecall: selectionRecall(r.forward.layout, batch, task.queries), density: r.forward.stats.density,
        ms: performance.now() - t0, ...times, forwardBackend: r.forward.backend,
      };
      run.history.push(s);
      if (step % 25 === 0 || step === 1) {
        process.stdout.write(`  ${run.name.padEnd(20)} step ${String(step).padStart(4)}  loss ${s.loss.toFixed(3)}  recall ${(100 * s.accuracy).toFixed(1).padStart(5)}%  `
          + `selection recall ${(100 * s.selectionRecall).toFixed(1).padStart(5)}%  density ${s.density.toFixed(3)}  ${s.ms.toFixed(0)} ms (attention ${s.forwardMs.toFixed(0)} + ${s.backwardMs.toFixed(0)} ms, forward on ${s.forwardBackend})\n`);
      }
    }
  }
  // The held-out batch, the same for both runs, each with its final attention.
  const held = makeBatch(task, o.evalBatch, prng(o.seed + 2));
  const evaluations: Record<string, Evaluation> = {};
  for (const run of runs) {
    const r = await run.model.step(held, run.attention(o.steps), attn);
    attn.take();
    evaluations[run.name] = { loss: r.loss, accuracy: r.accuracy, selectionRecall: selectionRecall(r.forward.layout, held, task.queries), density: r.forward.stats.density };
  }
  const sparseFrom = Math.min(o.steps, warmupSteps + rampSteps + 1);
  process.stdout.write(`\nheld-out batch of ${o.evalBatch} sequences after ${o.steps} steps (loss floor 0); time per step over steps ${sparseFrom}..${o.steps}, where the schedule is at its end point:\n`);
  for (const run of runs) {
    const e = evaluations[run.name];
    const late = run.history.filter((s) => s.step >= sparseFrom);
    process.stdout.write(`  ${run.name.padEnd(20)} loss ${e.loss.toFixed(4)}  recall ${(100 * e.accuracy).toFixed(1)}%  selection recall ${(100 * e.selectionRecall).toFixed(1)}%  density ${e.density.toFixed(3)}  `
      + `${mean(late.map((s) => s.ms)).toFixed(1)} ms/step (attention ${mean(late.map((s) => s.forwardMs)).toFixed(1)} + ${mean(late.map((s) => s.backwardMs)).toFixed(1)} ms)\n`);
  }
  const [d, s] = runs.map((r) => evaluations[r.name].loss);
  process.stdout.write(`  schedule's final loss over dense's: ${(s / d).toFixed(3)}\n`);
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  const json = { options: o, task, dims, evaluations, runs: Object.fromEntries(runs.map((r) => [r.name, r.history])) };
  writeFileSync(join(out, 'train-recall.json'), JSON.stringify(json, null, 2));
  writeFileSync(join(out, 'train-recall.svg'), lineChart(
    runs.map((r) => ({ name: r.name, points: r.history.map((h) => [h.step, h.loss] as [number, number]) })),
    { title: `Associative recall at context ${task.seq}: training loss`, xLabel: 'step', yLabel: 'cross-entropy' },
  ));
  process.stdout.write(`wrote ${join(out, 'train-recall.json')} and train-recall.svg\n`);
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exit(1);
});
