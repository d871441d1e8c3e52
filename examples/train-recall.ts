/**
 * Train a small attention-only model on associative recall across a long context, densely and
 * with the progressive sparsity schedule, and compare (loss, recall accuracy, time per step).
 *
 * The task: a context of `seq` positions holds `pairs` key-value pairs at random positions
 * (each position embeds its key and its value), filler tokens everywhere else, and ends with
 * `queries` query positions, each holding a key seen earlier; the model must output that key's
 * value. The answer is anywhere in the context, so a sliding window alone cannot find it: block
 * selection must. The model: learned embeddings, one attention layer with learned Q, K and V
 * projections, a linear readout, Adam. Queries attend causally to the whole context; the
 * sparse run uses window + per-row progressive block selection (queryBlockSize 1), moved from
 * dense to sparse by `progressiveSchedule`.
 *
 *   npm run example:recall                     # both runs, then a plot in examples/results/
 *   npm run example:recall -- --steps 800 --seq 4096 --tau 0.99
 */
import { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { attention, attentionBackward, progressiveSchedule } from '../lib';
import type { AttentionOptions } from '../lib';
import { lineChart } from '../bench/svg-plot';
import { gaussian, prng } from '../lib/demo';

interface Config {
  seq: number;
  pairs: number;
  queries: number;
  keys: number;
  values: number;
  fillers: number;
  model: number;
  headDim: number;
  batch: number;
  steps: number;
  lr: number;
  seed: number;
  /** The schedule's end point: progressive threshold, window, block size and estimate. */
  tau: number;
  window: number;
  blockSize: number;
  estimate: 'mean' | 'bound' | 'moment';
}

/** A parameter with its Adam moments. */
class Param {
  readonly grad: Float32Array;
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  constructor(readonly w: Float32Array) {
    this.grad = new Float32Array(w.length);
    this.m = new Float32Array(w.length);
    this.v = new Float32Array(w.length);
  }
  static random(n: number, std: number, gauss: () => number): Param {
    return new Param(Float32Array.from({ length: n }, () => std * gauss()));
  }
  adam(lr: number, t: number, b1 = 0.9, b2 = 0.999, eps = 1e-8): void {
    const c1 = 1 - b1 ** t;
    const c2 = 1 - b2 ** t;
    for (let i = 0; i < this.w.length; i++) {
      const g = this.grad[i];
      this.m[i] = b1 * this.m[i] + (1 - b1) * g;
      this.v[i] = b2 * this.v[i] + (1 - b2) * g * g;
      this.w[i] -= (lr * (this.m[i] / c1)) / (Math.sqrt(this.v[i] / c2) + eps);
    }
    this.grad.fill(0);
  }
}

/** C[n x p] (+)= A[n x m] · B[m x p], or with A or B transposed as stored. */
function matmul(A: Float32Array, B: Float32Array, n: number, m: number, p: number, C: Float32Array, o: { tA?: boolean; tB?: boolean; add?: boolean } = {}): void {
  if (!o.add) C.fill(0, 0, n * p);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < m; k++) {
      const a = o.tA ? A[k * n + i] : A[i * m + k];
      if (a === 0) continue;
      const row = i * p;
      for (let j = 0; j < p; j++) C[row + j] += a * (o.tB ? B[j * m + k] : B[k * p + j]);
    }
  }
}

/** One batch of sequences: token ids per position (key/value/filler/query) and the targets. */
interface Batch {
  /** Per sequence and position, the two embedding rows summed there (-1: none). */
  first: Int32Array;
  second: Int32Array;
  /** Per sequence and query, the value id to recall. */
  target: Int32Array;
}

function makeBatch(c: Config, rand: () => number): Batch {
  const { seq, pairs, queries, keys, values, fillers, batch } = c;
  const first = new Int32Array(batch * seq);
  const second = new Int32Array(batch * seq).fill(-1);
  const target = new Int32Array(batch * queries);
  const context = seq - queries;
  const markerRow = keys + values + fillers; // the "this is a query" embedding
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < context; i++) first[b * seq + i] = keys + values + Math.floor(rand() * fillers);
    // Distinct keys at distinct positions, each with a random value.
    const keyIds = shuffled(keys, rand).slice(0, pairs);
    const positions = shuffled(context, rand).slice(0, pairs);
    const valueOf = new Map<number, number>();
    for (let p = 0; p < pairs; p++) {
      const value = Math.floor(rand() * values);
      valueOf.set(keyIds[p], value);
      first[b * seq + positions[p]] = keyIds[p];
      second[b * seq + positions[p]] = keys + value;
    }
    for (let t = 0; t < queries; t++) {
      const key = keyIds[Math.floor(rand() * pairs)];
      first[b * seq + context + t] = key;
      second[b * seq + context + t] = markerRow;
      target[b * queries + t] = valueOf.get(key)!;
    }
  }
  return { first, second, target };
}

function shuffled(n: number, rand: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

interface StepLog {
  step: number;
  loss: number;
  accuracy: number;
  ms: number;
  density: number;
}

async function train(c: Config, sparse: boolean, log: (s: StepLog) => void): Promise<StepLog[]> {
  const gauss = gaussian(prng(c.seed));
  const data = prng(c.seed + 1);
  const rows = c.keys + c.values + c.fillers + 1;
  const d = c.model;
  const D = c.headDim;
  const E = Param.random(rows * d, 1, gauss);
  const Wq = Param.random(d * D, 1 / Math.sqrt(d), gauss);
  const Wk = Param.random(d * D, 1 / Math.sqrt(d), gauss);
  const Wv = Param.random(d * D, 1 / Math.sqrt(d), gauss);
  const Wo = Param.random(D * c.values, 1 / Math.sqrt(D), gauss);
  const { seq: N, queries: Qn, batch: B } = c;
  const schedule = progressiveSchedule({ warmupSteps: Math.round(c.steps * 0.3), rampSteps: Math.round(c.steps * 0.3), curve: 'cosine', progressive: [1, c.tau], window: [N, c.window], globalTokens: 4, minBlocks: 1 });
  const X = new Float32Array(B * N * d);
  const K = new Float32Array(B * N * D);
  const V = new Float32Array(B * N * D);
  const Q = new Float32Array(B * Qn * D);
  const logits = new Float32Array(B * Qn * c.values);
  const dLogits = new Float32Array(B * Qn * c.values);
  const dO = new Float32Array(B * Qn * D);
  const dX = new Float32Array(N * d);
  const history: StepLog[] = [];
  for (let step = 1; step <= c.steps; step++) {
    const t0 = performance.now();
    const batch = makeBatch(c, data);
    // Embeddings: the sum of the position's one or two rows.
    X.fill(0);
    for (let x = 0; x < B * N; x++) {
      for (const r of [batch.first[x], batch.second[x]]) {
        if (r < 0) continue;
        for (let j = 0; j < d; j++) X[x * d + j] += E.w[r * d + j];
      }
    }
    for (let b = 0; b < B; b++) {
      matmul(X.subarray(b * N * d), Wk.w, N, d, D, K.subarray(b * N * D));
      matmul(X.subarray(b * N * d), Wv.w, N, d, D, V.subarray(b * N * D));
      matmul(X.subarray((b * N + N - Qn) * d), Wq.w, Qn, d, D, Q.subarray(b * Qn * D));
    }
    const sparsity = sparse ? schedule(step) : {};
    const isSparse = Object.keys(sparsity).length > 0;
    const options: AttentionOptions = {
      shape: { batch: B, heads: 1, seqQ: Qn, seqK: N, headDim: D }, causal: true, saveForBackward: true, backend: 'js',
      ...(isSparse ? { ...sparsity, blockSize: c.blockSize, queryBlockSize: 1, estimate: c.estimate } : {}),
    };
    const fwd = await attention(Q, K, V, options);
    // Readout and cross-entropy.
    let loss = 0;
    let correct = 0;
    matmul(fwd.output, Wo.w, B * Qn, D, c.values, logits);
    for (let r = 0; r < B * Qn; r++) {
      const row = logits.subarray(r * c.values, (r + 1) * c.values);
      let mx = -Infinity;
      let arg = 0;
      for (let j = 0; j < c.values; j++) if (row[j] > mx) [mx, arg] = [row[j], j];
      let sum = 0;
      for (let j = 0; j < c.values; j++) sum += Math.exp(row[j] - mx);
      const want = batch.target[r];
      loss += -(row[want] - mx - Math.log(sum));
      if (arg === want) correct++;
      for (let j = 0; j < c.values; j++) dLogits[r * c.values + j] = (Math.exp(row[j] - mx) / sum - (j === want ? 1 : 0)) / (B * Qn);
    }
    // Backward: readout, attention, projections, embeddings.
    matmul(fwd.output, dLogits, D, B * Qn, c.values, Wo.grad, { tA: true, add: true });
    matmul(dLogits, Wo.w, B * Qn, c.values, D, dO, { tB: true });
    const g = await attentionBackward(dO, Q, K, V, fwd);
    for (let b = 0; b < B; b++) {
      const Xb = X.subarray(b * N * d);
      const dk = g.dk.subarray(b * N * D);
      const dv = g.dv.subarray(b * N * D);
      const dq = g.dq.subarray(b * Qn * D);
      matmul(Xb, dk, d, N, D, Wk.grad, { tA: true, add: true });
      matmul(Xb, dv, d, N, D, Wv.grad, { tA: true, add: true });
      matmul(Xb.subarray((N - Qn) * d), dq, d, Qn, D, Wq.grad, { tA: true, add: true });
      matmul(dk, Wk.w, N, D, d, dX, { tB: true });
      matmul(dv, Wv.w, N, D, d, dX, { tB: true, add: true });
      const dXq = new Float32Array(Qn * d);
      matmul(dq, Wq.w, Qn, D, d, dXq, { tB: true });
      for (let i = 0; i < Qn * d; i++) dX[(N - Qn) * d + i] += dXq[i];
      for (let i = 0; i < N; i++) {
        for (const r of [batch.first[b * N + i], batch.second[b * N + i]]) {
          if (r < 0) continue;
          for (let j = 0; j < d; j++) E.grad[r * d + j] += dX[i * d + j];
        }
      }
    }
    for (const p of [E, Wq, Wk, Wv, Wo]) p.adam(c.lr, step);
    const entry = { step, loss: loss / (B * Qn), accuracy: correct / (B * Qn), ms: performance.now() - t0, density: fwd.stats.density };
    history.push(entry);
    log(entry);
  }
  return history;
}

async function main(): Promise<void> {
  const o = new Command()
    .option('--steps <n>', 'training steps per run', (x) => parseInt(x, 10), 500)
    .option('--seq <n>', 'context length', (x) => parseInt(x, 10), 2048)
    .option('--batch <n>', 'sequences per step', (x) => parseInt(x, 10), 4)
    .option('--seed <n>', 'seed', (x) => parseInt(x, 10), 1)
    .option('--tau <x>', 'progressive threshold at the end of the schedule', parseFloat, 0.95)
    .option('--window <n>', 'window at the end of the schedule', (x) => parseInt(x, 10), 128)
    .option('--block-size <n>', 'key block size of the selection', (x) => parseInt(x, 10), 32)
    .option('--estimate <name>', "block estimate: 'mean', 'bound' or 'moment'", 'bound')
    .option('--out <dir>', 'where the JSON and the plot go', 'examples/results')
    .parse()
    .opts<{ steps: number; seq: number; batch: number; seed: number; out: string; tau: number; window: number; blockSize: number; estimate: Config['estimate'] }>();
  const c: Config = {
    seq: o.seq, pairs: 64, queries: 32, keys: 256, values: 32, fillers: 16, model: 32, headDim: 32, batch: o.batch, steps: o.steps, lr: 1e-2, seed: o.seed,
    tau: o.tau, window: o.window, blockSize: o.blockSize, estimate: o.estimate,
  };
  const runs: Record<string, StepLog[]> = {};
  for (const [name, sparse] of [['dense', false], ['progressive schedule', true]] as const) {
    process.stdout.write(`${name}: ${c.steps} steps, context ${c.seq}, ${c.pairs} pairs, ${c.queries} queries per sequence, batch ${c.batch}\n`);
    runs[name] = await train(c, sparse, (s) => {
      if (s.step % 25 === 0 || s.step === 1) {
        process.stdout.write(`  step ${String(s.step).padStart(4)}  loss ${s.loss.toFixed(3)}  recall ${(100 * s.accuracy).toFixed(1).padStart(5)}%  density ${s.density.toFixed(3)}  ${s.ms.toFixed(0)} ms\n`);
      }
    });
  }
  const tail = (h: StepLog[], f: (s: StepLog) => number) => h.slice(-25).reduce((a, s) => a + f(s), 0) / Math.min(25, h.length);
  const floor = 0; // the value is a function of the query's key: a perfect model has zero loss
  process.stdout.write(`\nlast 25 steps (loss floor ${floor}):\n`);
  for (const [name, h] of Object.entries(runs)) {
    process.stdout.write(`  ${name.padEnd(22)} loss ${tail(h, (s) => s.loss).toFixed(3)}  recall ${(100 * tail(h, (s) => s.accuracy)).toFixed(1)}%  ${tail(h, (s) => s.ms).toFixed(0)} ms/step at density ${tail(h, (s) => s.density).toFixed(3)}\n`);
  }
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'train-recall.json'), JSON.stringify({ config: c, runs }, null, 2));
  writeFileSync(join(out, 'train-recall.svg'), lineChart(
    Object.entries(runs).map(([name, h]) => ({ name, points: h.map((s) => [s.step, s.loss] as [number, number]) })),
    { title: `Associative recall at context ${c.seq}: training loss`, xLabel: 'step', yLabel: 'cross-entropy' },
  ));
  process.stdout.write(`wrote ${join(out, 'train-recall.json')} and train-recall.svg\n`);
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exit(1);
});
