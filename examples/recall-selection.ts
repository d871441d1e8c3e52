/**
 * The recall of block selection itself on the recall task: train the model densely, then, on a
 * held-out batch, report for each block estimate and block rule how often the kept set of a
 * query holds the pair it asks for, the density, and the loss the trained model gets with it
 * (forward only: the model has not adapted to the sparse layout), and the time of a training
 * step's attention split into its phases: the forward, of it the selection (the forward given
 * the layout it chose, subtracted), and the backward (medians of --reps steps of --batch
 * sequences, with a learning rate of 0 so the weights stay as trained).
 *
 *   node dist/examples/recall-selection.js --steps 300
 */
import { Command } from 'commander';
import type { AttentionOptions, BlocksOption } from '../lib';
import { prng } from '../lib/demo';
import { Attention } from './recall/attention';
import { cosineLearningRate, RecallModel } from './recall/model';
import { selectionRecall } from './recall/selection-recall';
import { makeBatch } from './recall/task';
import type { Task } from './recall/task';

async function main(): Promise<void> {
  const o = new Command()
    .option('--steps <n>', 'dense training steps', (x) => parseInt(x, 10), 800)
    .option('--seq <n>', 'context length', (x) => parseInt(x, 10), 2048)
    .option('--batch <n>', 'sequences per step', (x) => parseInt(x, 10), 4)
    .option('--eval-batch <n>', 'sequences of the held-out batch', (x) => parseInt(x, 10), 16)
    .option('--queries <n>', 'queries at the end of each sequence', (x) => parseInt(x, 10), 32)
    .option('--lr <x>', 'peak learning rate (cosine decay to a tenth of it over the steps)', parseFloat, 1e-2)
    .option('--head-dim <n>', 'attention head dimension', (x) => parseInt(x, 10), 32)
    .option('--embedding-std <x>', 'standard deviation of the initial embeddings', parseFloat, 0.1)
    .option('--weight-decay <x>', 'decoupled weight decay', parseFloat, 0)
    .option('--window <n>', 'window', (x) => parseInt(x, 10), 16)
    .option('--block-sizes <list>', 'key block sizes', '16,32,64')
    .option('--query-block-sizes <list>', 'query rows per selection', '1,4,16')
    .option('--estimates <list>', 'block estimates', 'mean,bound,moment')
    .option('--ratios <list>', 'ratios of the candidate key blocks to keep', '0.05,0.1,0.2')
    .option('--taus <list>', 'thresholds of the progressive rule', '0.9,0.99')
    .option('--reps <n>', 'timed repetitions per configuration', (x) => parseInt(x, 10), 5)
    .option('--seed <n>', 'seed', (x) => parseInt(x, 10), 1)
    .parse()
    .opts<{ steps: number; seq: number; batch: number; evalBatch: number; queries: number; lr: number; headDim: number; embeddingStd: number; weightDecay: number; window: number; blockSizes: string; queryBlockSizes: string; estimates: string; ratios: string; taus: string; reps: number; seed: number }>();
  const task: Task = { seq: o.seq, pairs: 64, queries: o.queries, keys: 256, values: 32, fillers: 16, queryOrder: 'random' };
  const model = new RecallModel(task, { model: 32, headDim: o.headDim, embeddingStd: o.embeddingStd }, o.seed);
  const attn = new Attention();
  const data = prng(o.seed + 1);
  for (let step = 1; step <= o.steps; step++) await model.step(makeBatch(task, o.batch, data), {}, attn, { lr: cosineLearningRate(o.lr, step, o.steps), decay: o.weightDecay });
  const held = makeBatch(task, o.evalBatch, prng(o.seed + 2));
  const dense = await model.step(held, {}, attn);
  process.stdout.write(`dense model after ${o.steps} steps, held-out batch of ${o.evalBatch}: loss ${dense.loss.toFixed(4)}, recall ${(100 * dense.accuracy).toFixed(1)}%\n`);
  const timed = makeBatch(task, o.batch, prng(o.seed + 3));
  attn.take(); // the training's time is not a phase
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  // Forward, selection and backward milliseconds of one training step under `options`.
  const phases = async (options: AttentionOptions): Promise<string> => {
    const fwd: number[] = [];
    const bwd: number[] = [];
    const given: number[] = [];
    for (let i = 0; i < o.reps; i++) {
      const r = await model.step(timed, options, attn, { lr: 0, decay: 0 });
      const t = attn.take();
      fwd.push(t.forwardMs);
      bwd.push(t.backwardMs);
      if (!r.forward.layout) continue;
      await model.step(timed, { layout: r.forward.layout }, attn);
      given.push(attn.take().forwardMs);
    }
    const selection = given.length ? (median(fwd) - median(given)).toFixed(1) : '-';
    return `${median(fwd).toFixed(1).padStart(6)}  ${selection.padStart(9)}  ${median(bwd).toFixed(1).padStart(6)}`;
  };
  process.stdout.write(`attention of a training step (batch ${o.batch}), ms: forward, of it selection, backward\n`);
  process.stdout.write(`dense${' '.repeat(92)}${await phases({})}\n`);
  process.stdout.write('block  query rows  estimate  rule              selection recall  density  loss    recall  forward  selection  backward\n');
  const list = (s: string) => s.split(',').filter((x) => x !== '');
  const rules: [string, BlocksOption][] = [
    ...list(o.ratios).map((r): [string, BlocksOption] => [`ratio ${r}`, { ratio: Number(r), minBlocks: 1 }]),
    ...list(o.taus).map((t): [string, BlocksOption] => [`progressive ${t}`, { progressive: Number(t), minBlocks: 1 }]),
  ];
  for (const bs of list(o.blockSizes).map(Number)) {
    for (const qbs of list(o.queryBlockSizes).map(Number)) {
      for (const estimate of list(o.estimates) as ('mean' | 'bound' | 'moment')[]) {
        for (const [name, blocks] of rules) {
          const options: AttentionOptions = { window: o.window, globalTokens: 4, blockSize: bs, queryBlockSize: qbs, estimate, blocks };
          const r = await model.step(held, options, attn);
          process.stdout.write(`${String(bs).padStart(5)}  ${String(qbs).padStart(10)}  ${estimate.padEnd(8)}  ${name.padEnd(16)}  ${(100 * selectionRecall(r.forward.layout, held, task.queries)).toFixed(1).padStart(15)}%  `
            + `${r.forward.stats.density.toFixed(3)}  ${r.loss.toFixed(3).padStart(6)}  ${(100 * r.accuracy).toFixed(1).padStart(5)}%  ${await phases(options)}\n`);
        }
      }
    }
  }
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exit(1);
});
