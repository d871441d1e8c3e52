/**
 * Block selection (docs/contract.md#block-selection): for each (batch, head, query block I) estimate e(I, J) for the
 * candidate key blocks J and keep them by ratio, by count, or progressively until the
 * estimated attention mass reaches the threshold. Estimates are computed in float64.
 */
import { geometryOf } from '../geometry';
import { BlockLayout } from '../layout';
import { isCandidate } from '../mask';
import type { Problem, Selection } from '../problem';
import { ceilTolerant } from '../validate';
import { rowAccess } from './rows';

/** Per block: the mean of its valid rows, and for 'bound' the per-channel min and max. */
interface BlockSummary {
  mean: Float64Array; // [blocks][D]
  min: Float64Array | null;
  max: Float64Array | null;
  /** Population variance per channel ('moment'). */
  variance: Float64Array | null;
  count: Int32Array; // valid rows per block
}

/** Blocks of `bs` rows of one (batch, head): their means, and the bounds or variances an estimate needs. */
function summarize(x: Float32Array, p: Problem, b: number, h: number, heads: number, seq: number, bs: number, need: 'mean' | 'bound' | 'moment'): BlockSummary {
  const D = p.headDim;
  const withBounds = need === 'bound';
  const nb = Math.ceil(seq / bs);
  const { base, stride } = rowAccess(p.memoryLayout, b, h, heads, seq, D);
  const mean = new Float64Array(nb * D);
  const min = withBounds ? new Float64Array(nb * D).fill(Infinity) : null;
  const max = withBounds ? new Float64Array(nb * D).fill(-Infinity) : null;
  const variance = need === 'moment' ? new Float64Array(nb * D) : null;
  const count = new Int32Array(nb);
  for (let B = 0; B < nb; B++) {
    const n0 = B * bs;
    const n1 = Math.min(seq, n0 + bs);
    count[B] = n1 - n0;
    for (let n = n0; n < n1; n++) {
      const r = base + n * stride;
      for (let d = 0; d < D; d++) {
        const v = x[r + d];
        mean[B * D + d] += v;
        if (min && max) {
          if (v < min[B * D + d]) min[B * D + d] = v;
          if (v > max[B * D + d]) max[B * D + d] = v;
        }
      }
    }
    for (let d = 0; d < D; d++) mean[B * D + d] /= count[B];
    if (variance) {
      // Two passes (mean, then squared deviations): no cancellation for keys far from zero.
      for (let n = n0; n < n1; n++) {
        const r = base + n * stride;
        for (let d = 0; d < D; d++) variance[B * D + d] += (x[r + d] - mean[B * D + d]) ** 2;
      }
      for (let d = 0; d < D; d++) variance[B * D + d] /= count[B];
    }
  }
  return { mean, min, max, variance, count };
}

/** How many of `c` ranked candidates to keep. `weights` are in ranked order (progressive only). */
export function keepCount(sel: Selection, c: number, weights: Float64Array | null): number {
  let n: number;
  if (sel.mode === 'ratio') n = ceilTolerant(sel.value * c);
  else if (sel.mode === 'topBlocks') n = sel.value;
  else {
    let total = 0;
    for (let r = 0; r < c; r++) total += weights![r];
    const goal = sel.value * total;
    let acc = 0;
    n = 0;
    while (n < c && acc < goal) acc += weights![n++];
  }
  return Math.min(c, Math.max(sel.minBlocks, Math.min(sel.maxBlocks, n)));
}

/** Candidate key blocks of every query block (they depend on geometry only). */
function candidatesOf(p: Problem): number[][] {
  const bs = p.blockSize;
  const qbs = p.queryBlockSize;
  const nQB = Math.ceil(p.seqQ / qbs);
  const nKB = Math.ceil(p.seqK / bs);
  const out: number[][] = [];
  for (let I = 0; I < nQB; I++) {
    const i0 = I * qbs;
    const i1 = Math.min(p.seqQ, i0 + qbs) - 1;
    const list: number[] = [];
    for (let J = 0; J < nKB; J++) {
      if (isCandidate(p.mask, i0, i1, J * bs, Math.min(p.seqK, J * bs + bs) - 1)) list.push(J);
    }
    out.push(list);
  }
  return out;
}

/** Run the problem's block selection on q and k, returning the full layout (window, sinks, selected blocks). */
export function selectBlocks(p: Problem, q: Float32Array, k: Float32Array): BlockLayout {
  const sel = p.selection!;
  const D = p.headDim;
  const group = p.heads / p.kvHeads;
  const nQB = Math.ceil(p.seqQ / p.queryBlockSize);
  const candidates = candidatesOf(p);
  const chosen: number[][] = new Array(p.batch * p.heads * nQB);

  for (let b = 0; b < p.batch; b++) {
    for (let hk = 0; hk < p.kvHeads; hk++) {
      const ks = summarize(k, p, b, hk, p.kvHeads, p.seqK, p.blockSize, sel.estimate);
      const qs: BlockSummary[] = [];
      for (let g = 0; g < group; g++) qs.push(summarize(q, p, b, hk * group + g, p.heads, p.seqQ, p.queryBlockSize, 'mean'));
      for (let I = 0; I < nQB; I++) {
        const cand = candidates[I];
        const est = qs.map((qsum) => cand.map((J) => estimate(qsum.mean, I, ks, J, D, sel.estimate, p.scale)));
        if (sel.shareAcrossGroup) {
          const shared = cand.map((_, c) => est.reduce((acc, e) => acc + e[c], 0) / group);
          const pick = rankAndKeep(sel, cand, shared, ks.count);
          for (let g = 0; g < group; g++) chosen[(b * p.heads + hk * group + g) * nQB + I] = pick;
        } else {
          for (let g = 0; g < group; g++) chosen[(b * p.heads + hk * group + g) * nQB + I] = rankAndKeep(sel, cand, est[g], ks.count);
        }
      }
    }
  }
  return BlockLayout.fromSelection(geometryOf(p), (b, h, I) => chosen[(b * p.heads + h) * nQB + I]);
}

/**
 * e(I, J): 'mean' scale · q̄ · k̄; 'bound' scale · Σ_d max(q̄_d min_d, q̄_d max_d); 'moment'
 * scale · q̄ · k̄ + scale²/2 · Σ_d q̄_d² var_d (the log of the mean of exp(s) over J were its
 * scores normal).
 */
function estimate(qMean: Float64Array, I: number, ks: BlockSummary, J: number, D: number, kind: Selection['estimate'], scale: number): number {
  let e = 0;
  const qo = I * D;
  const ko = J * D;
  if (kind === 'bound') {
    for (let d = 0; d < D; d++) {
      const a = qMean[qo + d] * ks.min![ko + d];
      const c = qMean[qo + d] * ks.max![ko + d];
      e += a > c ? a : c;
    }
    return scale * e;
  }
  for (let d = 0; d < D; d++) e += qMean[qo + d] * ks.mean[ko + d];
  if (kind === 'mean') return scale * e;
  let v = 0;
  for (let d = 0; d < D; d++) v += qMean[qo + d] * qMean[qo + d] * ks.variance![ko + d];
  return scale * e + ((scale * scale) / 2) * v;
}

/** Rank candidates by estimate (ties to the lower block index) and keep a prefix, returned ascending. */
function rankAndKeep(sel: Selection, cand: number[], est: number[], counts: Int32Array): number[] {
  const order = cand.map((_, c) => c).sort((x, y) => est[y] - est[x] || cand[x] - cand[y]);
  let weights: Float64Array | null = null;
  if (sel.mode === 'progressive' && order.length) {
    const top = est[order[0]];
    weights = Float64Array.from(order, (c) => counts[cand[c]] * Math.exp(est[c] - top));
  }
  const n = keepCount(sel, cand.length, weights);
  return order.slice(0, n).map((c) => cand[c]).sort((x, y) => x - y);
}
