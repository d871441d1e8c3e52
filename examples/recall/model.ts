/**
 * The model: learned embeddings, one attention layer with learned Q, K and V projections, a
 * linear readout, cross-entropy and Adam. Every position's input is the sum of one or two
 * embedding rows, and a projection is linear, so each step projects the embedding table once
 * (E·W, vocabulary x headDim) and gathers the rows of every position from it: the same model as
 * projecting each position's embedding, at the cost of the table instead of the context.
 * Attention is then about half of a dense step, which is what the example compares.
 */
import { gaussian, prng } from '../../lib/demo';
import type { AttentionOptions, AttentionResult } from '../../lib';
import type { Attention } from './attention';
import type { Batch, Task } from './task';
import { vocabulary } from './task';

export interface ModelDims {
  model: number;
  headDim: number;
  /** Standard deviation of the initial embeddings. */
  embeddingStd: number;
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
  /** Adam with decoupled weight decay (AdamW): `decay` shrinks every weight by lr · decay per step. */
  adam(lr: number, t: number, decay: number, b1 = 0.9, b2 = 0.999, eps = 1e-8): void {
    const c1 = 1 - b1 ** t;
    const c2 = 1 - b2 ** t;
    const shrink = 1 - lr * decay;
    for (let i = 0; i < this.w.length; i++) {
      const g = this.grad[i];
      this.m[i] = b1 * this.m[i] + (1 - b1) * g;
      this.v[i] = b2 * this.v[i] + (1 - b2) * g * g;
      this.w[i] = shrink * this.w[i] - (lr * (this.m[i] / c1)) / (Math.sqrt(this.v[i] / c2) + eps);
    }
    this.grad.fill(0);
  }
}

/** C[n x p] (+)= A[n x m] · B[m x p], or with A (stored m x n) or B (stored p x m) transposed; each form walks rows contiguously. */
function matmul(A: Float32Array, B: Float32Array, n: number, m: number, p: number, C: Float32Array, o: { tA?: boolean; tB?: boolean; add?: boolean } = {}): void {
  if (!o.add) C.fill(0, 0, n * p);
  if (o.tB) {
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
      const a = o.tA ? A[k * n + i] : A[i * m + k];
      if (a === 0) continue;
      const row = i * p;
      const b = k * p;
      for (let j = 0; j < p; j++) C[row + j] += a * B[b + j];
    }
  }
}

/** out[x] = table[first[x]] + table[second[x]] (rows `width` wide; -1: none). */
function gather(table: Float32Array, width: number, first: Int32Array, second: Int32Array, out: Float32Array): void {
  out.fill(0, 0, first.length * width);
  for (let x = 0; x < first.length; x++) {
    for (const r of [first[x], second[x]]) {
      if (r < 0) continue;
      for (let j = 0; j < width; j++) out[x * width + j] += table[r * width + j];
    }
  }
}

/** The gradient of `gather`: dTable[first[x]] += dOut[x], dTable[second[x]] += dOut[x]. */
function scatter(dOut: Float32Array, width: number, first: Int32Array, second: Int32Array, dTable: Float32Array): void {
  dTable.fill(0);
  for (let x = 0; x < first.length; x++) {
    for (const r of [first[x], second[x]]) {
      if (r < 0) continue;
      for (let j = 0; j < width; j++) dTable[r * width + j] += dOut[x * width + j];
    }
  }
}

/** The learning rate at `step` of `steps`: cosine from `lr` down to `lr · floor`, so that late steps refine instead of jumping about. */
export function cosineLearningRate(lr: number, step: number, steps: number, floor = 0.1): number {
  const x = Math.min(1, Math.max(0, (step - 1) / Math.max(1, steps - 1)));
  return lr * (floor + (1 - floor) * (1 + Math.cos(Math.PI * x)) / 2);
}

export interface StepResult {
  loss: number;
  accuracy: number;
  forward: AttentionResult<Float32Array>;
}

/** One projection: its weight and, per step, the projected table and its gradient. */
class Projection {
  readonly weight: Param;
  readonly table: Float32Array;
  readonly dTable: Float32Array;
  constructor(private readonly rows: number, private readonly d: number, private readonly D: number, gauss: () => number) {
    this.weight = Param.random(d * D, 1 / Math.sqrt(d), gauss);
    this.table = new Float32Array(rows * D);
    this.dTable = new Float32Array(rows * D);
  }
  project(E: Float32Array): void {
    matmul(E, this.weight.w, this.rows, this.d, this.D, this.table);
  }
  /** From the gradient of the gathered rows: the weight's gradient and the embeddings'. */
  backward(E: Param, dOut: Float32Array, first: Int32Array, second: Int32Array): void {
    scatter(dOut, this.D, first, second, this.dTable);
    matmul(E.w, this.dTable, this.d, this.rows, this.D, this.weight.grad, { tA: true, add: true });
    matmul(this.dTable, this.weight.w, this.rows, this.D, this.d, E.grad, { tB: true, add: true });
  }
}

export class RecallModel {
  private readonly rows: number;
  private readonly E: Param;
  private readonly q: Projection;
  private readonly k: Projection;
  private readonly v: Projection;
  private readonly Wo: Param;
  private t = 0;

  constructor(private readonly task: Task, private readonly dims: ModelDims, seed: number) {
    const gauss = gaussian(prng(seed));
    this.rows = vocabulary(task);
    this.E = Param.random(this.rows * dims.model, dims.embeddingStd, gauss);
    this.q = new Projection(this.rows, dims.model, dims.headDim, gauss);
    this.k = new Projection(this.rows, dims.model, dims.headDim, gauss);
    this.v = new Projection(this.rows, dims.model, dims.headDim, gauss);
    this.Wo = Param.random(dims.headDim * task.values, 1 / Math.sqrt(dims.headDim), gauss);
  }

  /**
   * Loss and recall accuracy on `batch` with attention under `sparsity`; with `update`, also the
   * backward pass and an AdamW step.
   */
  async step(batch: Batch, sparsity: AttentionOptions, attn: Attention, update?: { lr: number; decay: number }): Promise<StepResult> {
    const { seq: N, queries: Qn, values } = this.task;
    const D = this.dims.headDim;
    const B = batch.sequences;
    for (const p of [this.q, this.k, this.v]) p.project(this.E.w);
    const Q = new Float32Array(B * Qn * D);
    const K = new Float32Array(B * N * D);
    const V = new Float32Array(B * N * D);
    gather(this.q.table, D, batch.queryFirst, batch.querySecond, Q);
    gather(this.k.table, D, batch.first, batch.second, K);
    gather(this.v.table, D, batch.first, batch.second, V);
    const training = update !== undefined;
    const fwd = await attn.forward(Q, K, V, {
      ...sparsity, shape: { batch: B, heads: 1, seqQ: Qn, seqK: N, headDim: D }, causal: true, saveForBackward: training,
    });
    const logits = new Float32Array(B * Qn * values);
    const dLogits = new Float32Array(B * Qn * values);
    matmul(fwd.output, this.Wo.w, B * Qn, D, values, logits);
    let loss = 0;
    let correct = 0;
    for (let r = 0; r < B * Qn; r++) {
      const row = logits.subarray(r * values, (r + 1) * values);
      let mx = -Infinity;
      let arg = 0;
      for (let j = 0; j < values; j++) if (row[j] > mx) [mx, arg] = [row[j], j];
      let sum = 0;
      for (let j = 0; j < values; j++) sum += Math.exp(row[j] - mx);
      const want = batch.target[r];
      loss += -(row[want] - mx - Math.log(sum));
      if (arg === want) correct++;
      for (let j = 0; j < values; j++) dLogits[r * values + j] = (Math.exp(row[j] - mx) / sum - (j === want ? 1 : 0)) / (B * Qn);
    }
    if (training) {
      matmul(fwd.output, dLogits, D, B * Qn, values, this.Wo.grad, { tA: true, add: true });
      const dO = new Float32Array(B * Qn * D);
      matmul(dLogits, this.Wo.w, B * Qn, values, D, dO, { tB: true });
      const g = await attn.gradients(dO, Q, K, V, fwd);
      this.q.backward(this.E, g.dq, batch.queryFirst, batch.querySecond);
      this.k.backward(this.E, g.dk, batch.first, batch.second);
      this.v.backward(this.E, g.dv, batch.first, batch.second);
      this.t++;
      for (const p of [this.E, this.q.weight, this.k.weight, this.v.weight, this.Wo]) p.adam(update.lr, this.t, update.decay);
    }
    return { loss: loss / (B * Qn), accuracy: correct / (B * Qn), forward: fwd };
  }
}
