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
 * sparse run uses window + progressive block selection (per query block of
 * `--query-block-size` rows), moved from dense to sparse by `progressiveSchedule`. Attention
 * and its backward run on the cpu backend where the addon has it, else on js.
 *
 *   npm run example:recall                     # both runs, then a plot in examples/results/
 *   npm run example:recall -- --steps 800 --seq 4096 --tau 0.99
 */
import { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { attention, attentionBackward, info, progressiveSchedule, PsaError } from '../lib';
import type { AttentionOptions, AttentionResult, BackendName } from '../lib';
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
  /** The block rule at the end of the schedule: the progressive threshold, or (when set) a fixed ratio of the key blocks. */
  tau: number;
  ratio: number | null;
  window: number;
  blockSize: number;
  /** The order of the queries: random, or that of the pairs they ask for in the context. */
  queryOrder: 'random' | 'context';
  /** Query rows per selection block: 1 selects per row (a js forward), blockSize per block (the cpu forward too). */
  queryBlockSize: number;
  estimate: 'mean' | 'bound' | 'moment';
  /** The schedule: dense for the first `warmup` of the steps, then sparser over the next `ramp` (fractions). */
  warmup: number;
  ramp: number;
}

/**
 * Attention on the cpu backend where the addon has it (forward and backward), else js. A
 * problem the cpu forward declines (ERR_OPTION naming backend) runs its forward on js; its
 * backward still runs on cpu, which walks any layout.
 */
class Attention {
  readonly backward: BackendName = info().backends.some((b) => b.name === 'cpu' && b.available) ? 'cpu' : 'js';
  private readonly declined = new Set<string>();
  /** Milliseconds spent in attention and its backward, since the last take(). */
  private ms = 0;

  async forward(q: Float32Array, k: Float32Array, v: Float32Array, options: AttentionOptions): Promise<AttentionResult<Float32Array>> {
    const t0 = performance.now();
    const key = JSON.stringify({ ...options, shape: null });
    let r: AttentionResult<Float32Array> | null = null;
    if (this.backward === 'cpu' && !this.declined.has(key)) {
      r = await attention(q, k, v, { ...options, backend: 'cpu' }).catch((e: unknown) => {
        if (!(e instanceof PsaError && e.code === 'ERR_OPTION' && e.argument === 'backend')) throw e;
        this.declined.add(key);
        return null;
      });
    }
    r ??= await attention(q, k, v, { ...options, backend: 'js' });
    this.ms += performance.now() - t0;
    return r;
  }

  async gradients(dO: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, fwd: AttentionResult<Float32Array>) {
    const t0 = performance.now();
    const g = await attentionBackward(dO, q, k, v, fwd, { backend: this.backward });
    this.ms += performance.now() - t0;
    return g;
  }

  take(): number {
    const ms = this.ms;
    this.ms = 0;
    return ms;
  }
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

/** C[n x p] (+)= A[n x m] · B[m x p], or with A or B transposed as stored; each form walks rows contiguously. */
function matmul(A: Float32Array, B: Float32Array, n: number, m: number, p: number, C: Float32Array, o: { tA?: boolean; tB?: boolean; add?: boolean } = {}): void {
  if (!o.add) C.fill(0, 0, n * p);
  if (o.tB) {
    // C[i][j] += A[i] · B[j]
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < p; j++) {
        let s = 0;
        for (let k = 0; k < m; k++) s += A[i * m + k] * B[j * m + k];
        C[i * p + j] += s;
      }
    }
    return;
  }
  for (let k = 0; k < m; k++) {
    for (let i = 0; i < n; i++) {
      // A[k][i] (A stored m x n) or A[i][k]
      const a = o.tA ? A[k * n + i] : A[i * m + k];
      if (a === 0) continue;
      const row = i * p;
      const b = k * p;
      for (let j = 0; j < p; j++) C[row + j] += a * B[b + j];
    }
  }
}

/** Adds embedding rows `first[x]` and `second[x]` (-1: none) of E (d wide) into X[x], or their gradient from X into E. */
function embed(E: Float32Array, X: Float32Array, first: Int32Array, second: Int32Array, x0: number, count: number, d: number, backward: boolean): void {
  for (let x = x0; x < x0 + count; x++) {
    for (const r of [first[x], second[x]]) {
      if (r < 0) continue;
      const e = r * d;
      const xo = (x - (backward ? x0 : 0)) * d;
      if (backward) for (let j = 0; j < d; j++) E[e + j] += X[xo + j];
      else for (let j = 0; j < d; j++) X[xo + j] += E[e + j];
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
    // Which pair each query asks for; in context order, the queries of one query block ask
    // for nearby pairs, whose few key blocks a selection per query block can find.
    const asked = Array.from({ length: queries }, () => Math.floor(rand() * pairs));
    if (c.queryOrder === 'context') asked.sort((x, y) => positions[x] - positions[y]);
    for (let t = 0; t < queries; t++) {
      const key = keyIds[asked[t]];
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
  /** Of which attention, forward and backward. */
  attentionMs: number;
  density: number;
  forwardBackend: string;
}

async function train(c: Config, sparse: boolean, attn: Attention, log: (s: StepLog) => void): Promise<StepLog[]> {
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
  const schedule = progressiveSchedule({ warmupSteps: Math.round(c.steps * c.warmup), rampSteps: Math.round(c.steps * c.ramp), curve: 'cosine', ...(c.ratio === null ? { progressive: [1, c.tau] as [number, number] } : { blockRatio: [1, c.ratio] as [number, number] }), window: [N, c.window], globalTokens: 4, minBlocks: 1 });
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
    embed(E.w, X, batch.first, batch.second, 0, B * N, d, false);
    for (let b = 0; b < B; b++) {
      matmul(X.subarray(b * N * d), Wk.w, N, d, D, K.subarray(b * N * D));
      matmul(X.subarray(b * N * d), Wv.w, N, d, D, V.subarray(b * N * D));
      matmul(X.subarray((b * N + N - Qn) * d), Wq.w, Qn, d, D, Q.subarray(b * Qn * D));
    }
    const sparsity = sparse ? schedule(step) : {};
    const isSparse = Object.keys(sparsity).length > 0;
    const options: AttentionOptions = {
      shape: { batch: B, heads: 1, seqQ: Qn, seqK: N, headDim: D }, causal: true, saveForBackward: true,
      ...(isSparse ? { ...sparsity, blockSize: c.blockSize, queryBlockSize: c.queryBlockSize, estimate: c.estimate } : {}),
    };
    const fwd = await attn.forward(Q, K, V, options);
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
    const g = await attn.gradients(dO, Q, K, V, fwd);
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
      embed(E.grad, dX, batch.first, batch.second, b * N, N, d, true);
    }
    for (const p of [E, Wq, Wk, Wv, Wo]) p.adam(c.lr, step);
    const entry = { step, loss: loss / (B * Qn), accuracy: correct / (B * Qn), ms: performance.now() - t0, attentionMs: attn.take(), density: fwd.stats.density, forwardBackend: fwd.backend };
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
    .option('--ratio <x>', 'instead of the progressive rule: the ratio of key blocks kept at the end of the schedule', parseFloat)
    .option('--window <n>', 'window at the end of the schedule', (x) => parseInt(x, 10), 128)
    .option('--block-size <n>', 'key block size of the selection', (x) => parseInt(x, 10), 32)
    .option('--query-block-size <n>', 'query rows per selection: 1 per row, or the block size (what the cpu forward selects by)', (x) => parseInt(x, 10), 1)
    .option('--queries <n>', 'queries at the end of each sequence', (x) => parseInt(x, 10), 32)
    .option('--query-order <order>', "'random', or 'context' (the queries ask for the pairs in context order)", 'random')
    .option('--lr <x>', 'Adam learning rate', parseFloat, 1e-2)
    .option('--estimate <name>', "block estimate: 'mean', 'bound' or 'moment'", 'bound')
    .option('--warmup <x>', 'fraction of the steps the schedule stays dense', parseFloat, 0.3)
    .option('--ramp <x>', 'fraction of the steps the schedule takes from dense to its end point', parseFloat, 0.3)
    .option('--out <dir>', 'where the JSON and the plot go', 'examples/results')
    .parse()
    .opts<{ steps: number; seq: number; batch: number; seed: number; out: string; tau: number; ratio?: number; window: number; blockSize: number; estimate: Config['estimate']; warmup: number; ramp: number; queryBlockSize: number; queries: number; lr: number; queryOrder: Config['queryOrder'] }>();
  const c: Config = {
    seq: o.seq, pairs: 64, queries: o.queries, keys: 256, values: 32, fillers: 16, model: 32, headDim: 32, batch: o.batch, steps: o.steps, lr: o.lr, seed: o.seed,
    tau: o.tau, ratio: o.ratio ?? null, window: o.window, blockSize: o.blockSize, queryBlockSize: o.queryBlockSize, queryOrder: o.queryOrder, estimate: o.estimate, warmup: o.warmup, ramp: o.ramp,
  };
  if (!(c.queries >= 1 && c.seq - c.queries >= c.pairs)) throw new Error(`--queries ${c.queries} leaves fewer than ${c.pairs} context positions of --seq ${c.seq} for the pairs`);
  const runs: Record<string, StepLog[]> = {};
  const attn = new Attention();
  for (const [name, sparse] of [['dense', false], ['progressive schedule', true]] as const) {
    process.stdout.write(`${name}: ${c.steps} steps, context ${c.seq}, ${c.pairs} pairs, ${c.queries} queries per sequence, batch ${c.batch}\n`);
    runs[name] = await train(c, sparse, attn, (s) => {
      if (s.step % 25 === 0 || s.step === 1) {
        process.stdout.write(`  step ${String(s.step).padStart(4)}  loss ${s.loss.toFixed(3)}  recall ${(100 * s.accuracy).toFixed(1).padStart(5)}%  density ${s.density.toFixed(3)}  ${s.ms.toFixed(0)} ms (attention ${s.attentionMs.toFixed(0)} ms, forward on ${s.forwardBackend})\n`);
      }
    });
  }
  const tail = (h: StepLog[], f: (s: StepLog) => number) => h.slice(-25).reduce((a, s) => a + f(s), 0) / Math.min(25, h.length);
  const floor = 0; // the value is a function of the query's key: a perfect model has zero loss
  process.stdout.write(`\nlast 25 steps (loss floor ${floor}):\n`);
  for (const [name, h] of Object.entries(runs)) {
    process.stdout.write(`  ${name.padEnd(22)} loss ${tail(h, (s) => s.loss).toFixed(3)}  recall ${(100 * tail(h, (s) => s.accuracy)).toFixed(1)}%  ${tail(h, (s) => s.ms).toFixed(0)} ms/step (attention ${tail(h, (s) => s.attentionMs).toFixed(0)} ms) at density ${tail(h, (s) => s.density).toFixed(3)}\n`);
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
