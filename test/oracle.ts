/**
 * A float64 oracle for psa-attention, written from the contract (docs/contract.md) only
 * (never from lib/reference, lib/mask.ts or lib/problem.ts: it exists to catch their mistakes).
 *
 * Plain and element by element: every (row, key) pair is decided on its own, every score is a
 * float64 dot product, every block estimate a float64 mean. No tiling, no online softmax.
 */

export type Layout = 'bhnd' | 'bnhd';

export interface OracleShape {
  batch: number;
  heads: number;
  kvHeads?: number;
  seqQ: number;
  seqK?: number;
  headDim: number;
  layout?: Layout;
}

export type OracleBlocks =
  | { ratio: number; minBlocks?: number; maxBlocks?: number }
  | { topBlocks: number; minBlocks?: number; maxBlocks?: number }
  | { progressive: number; minBlocks?: number; maxBlocks?: number };

export type OracleSoftmax = 'exact' | 'poly' | { degree?: number; coefficients?: readonly number[] };

export interface OracleOptions {
  causal?: boolean;
  scale?: number;
  window?: number | readonly [number, number];
  globalTokens?: number;
  blockSize?: number;
  /** Query rows per query block (default blockSize). */
  queryBlockSize?: number;
  blocks?: OracleBlocks;
  estimate?: 'mean' | 'bound' | 'moment';
  shareAcrossGroup?: boolean;
  topK?: number;
  topKRatio?: number;
  softmax?: OracleSoftmax;
  /**
   * "Given the same selection": selected key blocks per layout row r = (b*heads + h)*nQB + I,
   * used instead of the oracle's own selection (and making the problem sparse). With it, give
   * the layout's window ([left, right] as stored), globalTokens and blockSize.
   */
  selected?: ReadonlyArray<ReadonlyArray<number>>;
  /** "Given the same thresholds": per row [B, Hq, Nq], used instead of the oracle's own. */
  thresholds?: ArrayLike<number>;
  /** With `thresholds`: keep s >= tau - slack * max(1, |tau|) (float32 scores vs float64). Default 1e-6. */
  thresholdSlack?: number;
}

/** Minimax coefficients of 2^f on [0, 1), c0 first (docs/contract.md#softmax-and-outputs), and their max relative error. */
export const ORACLE_POLY: Record<number, { coefficients: number[]; error: number }> = {
  2: { coefficients: [1, 0.6657850742340087890625, 0.330107033252716064453125], error: 2.1e-3 },
  3: { coefficients: [1, 0.695146143436431884765625, 0.227564394474029541015625, 0.077119089663028717041015625], error: 8.8e-5 },
  4: {
    coefficients: [1, 0.693042695522308349609375, 0.2412912547588348388671875, 5.2225358784198760986328125e-2, 1.3434938155114650726318359375e-2],
    error: 3.0e-6,
  },
  5: {
    coefficients: [
      1, 0.693151414394378662109375, 0.24016360938549041748046875, 5.5802188813686370849609375e-2, 9.01452265679836273193359375e-3,
      1.86810153536498546600341796875e-3,
    ],
    error: 1.7e-7,
  },
};

export interface OracleEntry {
  block: number;
  full: boolean;
  selected: boolean;
}

export interface OracleStats {
  density: number;
  keptPairs: number;
  allowedPairs: number;
  blocksVisited: number;
  blocksDense: number;
  emptyRows: number;
}

export interface OracleResult {
  /** Same layout as q: [B, Hq, Nq, D] (bhnd) or [B, Nq, Hq, D] (bnhd). */
  output: Float64Array;
  /** [B, Hq, Nq]. */
  lse: Float64Array;
  /** [B, Hq, Nq]: top-k thresholds, -inf where every allowed key is kept. */
  thresholds: Float64Array;
  /** [B, Hq, Nq]: |A_i| and |K_i|. */
  allowedCount: Int32Array;
  keptCount: Int32Array;
  sparse: boolean;
  /** Present when sparse: per layout row, the selected key blocks (ascending) and the layout entries. */
  selection?: number[][];
  entries?: OracleEntry[][];
  stats: OracleStats;
  numQueryBlocks: number;
  numKeyBlocks: number;
}

interface Resolved {
  B: number;
  Hq: number;
  Hkv: number;
  Nq: number;
  Nk: number;
  D: number;
  layout: Layout;
  scale: number;
  causal: boolean;
  win: [number, number] | null;
  G: number;
  bs: number;
  qbs: number;
  nQB: number;
  nKB: number;
  sparse: boolean;
}

export function resolve(shape: OracleShape, o: OracleOptions): Resolved {
  const B = shape.batch;
  const Hq = shape.heads;
  const Hkv = shape.kvHeads ?? Hq;
  const Nq = shape.seqQ;
  const Nk = shape.seqK ?? Nq;
  const D = shape.headDim;
  const causal = !!o.causal;
  let win: [number, number] | null = null;
  if (typeof o.window === 'number') win = causal ? [o.window - 1, 0] : [o.window - 1, o.window - 1];
  else if (o.window) win = [o.window[0], o.window[1]];
  const G = o.globalTokens ?? 0;
  const bs = o.blockSize ?? 64;
  const qbs = o.queryBlockSize ?? bs;
  const sparse = win !== null || G > 0 || o.blocks !== undefined || o.selected !== undefined;
  return {
    B, Hq, Hkv, Nq, Nk, D, layout: shape.layout ?? 'bhnd', scale: o.scale ?? 1 / Math.sqrt(D), causal, win, G, bs, qbs,
    nQB: Math.ceil(Nq / qbs), nKB: Math.ceil(Nk / bs), sparse,
  };
}

/** Offset of vector (b, h, n) in a [B, H, N, D] (bhnd) or [B, N, H, D] (bnhd) array. */
export function offsetOf(layout: Layout, H: number, N: number, D: number, b: number, h: number, n: number): number {
  return layout === 'bhnd' ? ((b * H + h) * N + n) * D : ((b * N + n) * H + h) * D;
}

/** ceil(x) forgiving float64 noise of up to 1e-9 relative (docs/contract.md#decisions). */
export function ceilTol(x: number): number {
  return Math.ceil(x - 1e-9 * Math.abs(x));
}

/** The polynomial exp2 of docs/contract.md#softmax-and-outputs, in float64 (coefficients rounded to float32). */
export function polyExp2(t: number, c: ArrayLike<number>): number {
  if (t < -127) t = -127;
  const n = Math.floor(t);
  const f = t - n;
  let p = c[c.length - 1];
  for (let k = c.length - 2; k >= 0; k--) p = p * f + c[k];
  return p * Math.pow(2, n);
}

/** The polynomial's coefficients of a softmax option (null for exact exp), c0 first. */
export function polyCoefficients(option: OracleSoftmax | undefined): readonly number[] | null {
  if (option === undefined || option === 'exact') return null;
  if (option === 'poly') return ORACLE_POLY[3].coefficients;
  return option.coefficients ?? ORACLE_POLY[option.degree ?? 3].coefficients;
}

/** max over f in [0, 1) of |p(f) / (c0 2^f) - 1|: how far the polynomial is from a (scaled) exponential. */
export function polyRelError(c: readonly number[]): number {
  let maxErr = 0;
  const n = 200000;
  for (let i = 0; i < n; i++) {
    const f = i / n;
    let p = c[c.length - 1];
    for (let k = c.length - 2; k >= 0; k--) p = p * f + c[k];
    maxErr = Math.max(maxErr, Math.abs(p / (c[0] * Math.pow(2, f)) - 1));
  }
  return maxErr;
}

/** The exponential E of the softmax option: exp, or the polynomial on x * log2(e). */
export function softmaxE(option: OracleSoftmax | undefined): (x: number) => number {
  const coeffs = polyCoefficients(option);
  if (!coeffs) return Math.exp;
  const c = Float64Array.from(coeffs, (x) => Math.fround(x));
  return (x: number) => polyExp2(x * Math.LOG2E, c);
}

/** Is key j causally allowed for row i (and a valid key)? */
function causalOk(r: Resolved, i: number, j: number): boolean {
  return j >= 0 && j < r.Nk && (!r.causal || j <= i + r.Nk - r.Nq);
}

function inWindow(r: Resolved, i: number, j: number): boolean {
  if (!r.win) return false;
  const p = i + r.Nk - r.Nq;
  return j >= p - r.win[0] && j <= p + r.win[1];
}

export interface OracleSelection {
  /** Per query block I, candidate key blocks ascending. */
  candidates: number[][];
  /** Estimates per layout row r = (b*Hq + h)*nQB + I, per key block J (NaN for non-candidates); shared ones when shareAcrossGroup. */
  estimates: Float64Array[];
  /** Per layout row, selected key blocks, ascending. */
  selection: number[][];
}

/** The block selection of docs/contract.md#block-selection (candidates, estimates, ratio / topBlocks / progressive, min/max clamp, GQA sharing). */
export function oracleSelection(q: Float32Array, k: Float32Array, shape: OracleShape, o: OracleOptions): OracleSelection {
  const r = resolve(shape, o);
  const { B, Hq, Hkv, Nq, Nk, D, bs, qbs, nQB, nKB, layout, scale } = r;
  // Candidates depend on positions only.
  const candidates: number[][] = [];
  for (let I = 0; I < nQB; I++) {
    const list: number[] = [];
    for (let J = 0; J < nKB; J++) {
      let found = false;
      for (let i = I * qbs; i < Math.min(Nq, (I + 1) * qbs) && !found; i++) {
        for (let j = J * bs; j < Math.min(Nk, (J + 1) * bs); j++) {
          if (causalOk(r, i, j) && !inWindow(r, i, j) && !(j < r.G)) {
            found = true;
            break;
          }
        }
      }
      if (found) list.push(J);
    }
    candidates.push(list);
  }
  const estimates: Float64Array[] = [];
  const selection: number[][] = [];
  if (!o.blocks) {
    for (let row = 0; row < B * Hq * nQB; row++) {
      estimates.push(new Float64Array(nKB).fill(NaN));
      selection.push([]);
    }
    return { candidates, estimates, selection };
  }
  const group = Hq / Hkv;
  // Per (b, kv head, J): mean, min, max of the valid keys.
  const kMean = new Float64Array(B * Hkv * nKB * D);
  const kMin = new Float64Array(B * Hkv * nKB * D).fill(Infinity);
  const kMax = new Float64Array(B * Hkv * nKB * D).fill(-Infinity);
  const kVar = new Float64Array(B * Hkv * nKB * D); // population variance ('moment')
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < Hkv; g++) {
      for (let J = 0; J < nKB; J++) {
        const base = ((b * Hkv + g) * nKB + J) * D;
        const j0 = J * bs;
        const j1 = Math.min(Nk, j0 + bs);
        for (let j = j0; j < j1; j++) {
          const off = offsetOf(layout, Hkv, Nk, D, b, g, j);
          for (let d = 0; d < D; d++) {
            const x = k[off + d];
            kMean[base + d] += x;
            if (x < kMin[base + d]) kMin[base + d] = x;
            if (x > kMax[base + d]) kMax[base + d] = x;
          }
        }
        for (let d = 0; d < D; d++) kMean[base + d] /= j1 - j0;
        for (let j = j0; j < j1; j++) {
          const off = offsetOf(layout, Hkv, Nk, D, b, g, j);
          for (let d = 0; d < D; d++) kVar[base + d] += (k[off + d] - kMean[base + d]) ** 2 / (j1 - j0);
        }
      }
    }
  }
  // Per-head estimates.
  const perHead: Float64Array[] = [];
  const qbar = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / group);
      for (let I = 0; I < nQB; I++) {
        qbar.fill(0);
        const i0 = I * qbs;
        const i1 = Math.min(Nq, i0 + qbs);
        for (let i = i0; i < i1; i++) {
          const off = offsetOf(layout, Hq, Nq, D, b, h, i);
          for (let d = 0; d < D; d++) qbar[d] += q[off + d];
        }
        for (let d = 0; d < D; d++) qbar[d] /= i1 - i0;
        const e = new Float64Array(nKB).fill(NaN);
        for (const J of candidates[I]) {
          const base = ((b * Hkv + g) * nKB + J) * D;
          let s = 0;
          let v = 0;
          for (let d = 0; d < D; d++) {
            if (o.estimate === 'bound') s += Math.max(qbar[d] * kMin[base + d], qbar[d] * kMax[base + d]);
            else s += qbar[d] * kMean[base + d];
            v += qbar[d] * qbar[d] * kVar[base + d];
          }
          e[J] = scale * s + (o.estimate === 'moment' ? ((scale * scale) / 2) * v : 0);
        }
        perHead.push(e);
      }
    }
  }
  const rowOf = (b: number, h: number, I: number) => (b * Hq + h) * nQB + I;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / group);
      for (let I = 0; I < nQB; I++) {
        let e = perHead[rowOf(b, h, I)];
        if (o.shareAcrossGroup) {
          e = new Float64Array(nKB).fill(NaN);
          for (const J of candidates[I]) {
            let s = 0;
            for (let hh = g * group; hh < (g + 1) * group; hh++) s += perHead[rowOf(b, hh, I)][J];
            e[J] = s / group;
          }
        }
        estimates.push(e);
        selection.push(selectBlocks(candidates[I], e, o.blocks, bs, Nk));
      }
    }
  }
  return { candidates, estimates, selection };
}

/** Keep-count and chosen blocks for one row, given its candidates and estimates. */
export function selectBlocks(cands: number[], e: Float64Array, blocks: OracleBlocks, bs: number, Nk: number): number[] {
  const C = cands.length;
  const order = cands.slice().sort((a, b) => (e[b] - e[a]) || a - b);
  let count: number;
  if ('ratio' in blocks) count = ceilTol(blocks.ratio * C);
  else if ('topBlocks' in blocks) count = blocks.topBlocks;
  else {
    let maxE = -Infinity;
    for (const J of order) maxE = Math.max(maxE, e[J]);
    const w = order.map((J) => (Math.min(Nk, (J + 1) * bs) - J * bs) * Math.exp(e[J] - maxE));
    let total = 0;
    for (const x of w) total += x;
    const target = blocks.progressive * total;
    count = C;
    let cum = 0;
    for (let m = 0; m <= C; m++) {
      if (cum >= target) {
        count = m;
        break;
      }
      if (m < C) cum += w[m];
    }
  }
  count = Math.max(count, blocks.minBlocks ?? 0);
  count = Math.min(count, blocks.maxBlocks ?? Infinity);
  count = Math.max(0, Math.min(count, C));
  return order.slice(0, count).sort((a, b) => a - b);
}

/** The full float64 oracle: allowed sets, selection, top-k, softmax, output, LSE, thresholds, stats, layout entries. */
export function oracle(q: Float32Array, k: Float32Array, v: Float32Array, shape: OracleShape, o: OracleOptions = {}): OracleResult {
  const r = resolve(shape, o);
  const { B, Hq, Hkv, Nq, Nk, D, bs, qbs, nQB, nKB, layout, scale, sparse } = r;
  const group = Hq / Hkv;
  let selection: number[][] | undefined;
  if (sparse) selection = o.selected ? o.selected.map((s) => Array.from(s).sort((a, b) => a - b)) : oracleSelection(q, k, shape, o).selection;
  const E = softmaxE(o.softmax);
  const output = new Float64Array(B * Hq * Nq * D);
  const lse = new Float64Array(B * Hq * Nq);
  const thresholds = new Float64Array(B * Hq * Nq);
  const allowedCount = new Int32Array(B * Hq * Nq);
  const keptCount = new Int32Array(B * Hq * Nq);
  const entries: OracleEntry[][] | undefined = sparse ? [] : undefined;
  let keptPairs = 0;
  let allowedPairs = 0;
  let emptyRows = 0;
  let blocksVisited = 0;
  let blocksDense = 0;
  const slack = o.thresholdSlack ?? 1e-6;

  const scores = new Float64Array(Nk);
  const inA = new Uint8Array(Nq * Nk);
  const acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / group);
      // Element-wise allowed set A for this (b, h).
      for (let i = 0; i < Nq; i++) {
        const I = Math.floor(i / qbs);
        const sel = sparse ? new Set(selection![(b * Hq + h) * nQB + I]) : null;
        for (let j = 0; j < Nk; j++) {
          let ok = causalOk(r, i, j);
          if (ok) allowedPairs++;
          if (ok && sparse) ok = inWindow(r, i, j) || j < r.G || sel!.has(Math.floor(j / bs));
          inA[i * Nk + j] = ok ? 1 : 0;
        }
      }
      // Tiles: dense count and layout entries.
      for (let I = 0; I < nQB; I++) {
        const sel = sparse ? new Set(selection![(b * Hq + h) * nQB + I]) : null;
        const list: OracleEntry[] = [];
        for (let J = 0; J < nKB; J++) {
          let anyCausal = false;
          let any = false;
          let all = true;
          for (let i = I * qbs; i < Math.min(Nq, (I + 1) * qbs); i++) {
            for (let j = J * bs; j < Math.min(Nk, (J + 1) * bs); j++) {
              if (causalOk(r, i, j)) anyCausal = true;
              if (inA[i * Nk + j]) any = true;
              else all = false;
            }
          }
          if (anyCausal) blocksDense++;
          if (sparse && any) list.push({ block: J, full: all, selected: sel!.has(J) });
        }
        if (sparse) {
          entries!.push(list);
          blocksVisited += list.length;
        }
      }
      // Rows.
      for (let i = 0; i < Nq; i++) {
        const row = (b * Hq + h) * Nq + i;
        const qo = offsetOf(layout, Hq, Nq, D, b, h, i);
        const idx: number[] = [];
        for (let j = 0; j < Nk; j++) {
          if (!inA[i * Nk + j]) continue;
          const ko = offsetOf(layout, Hkv, Nk, D, b, g, j);
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qo + d] * k[ko + d];
          scores[j] = scale * s;
          idx.push(j);
        }
        allowedCount[row] = idx.length;
        let tau = -Infinity;
        let kept = idx;
        if (o.thresholds) {
          const t = o.thresholds[row];
          tau = t;
          if (t !== -Infinity) kept = idx.filter((j) => scores[j] >= t - slack * Math.max(1, Math.abs(t)));
        } else if (o.topK !== undefined || o.topKRatio !== undefined) {
          const kk = o.topK !== undefined ? o.topK : Math.max(1, ceilTol(o.topKRatio! * idx.length));
          if (idx.length > kk) {
            const sorted = idx.map((j) => scores[j]).sort((a, b) => b - a);
            tau = sorted[kk - 1];
            kept = idx.filter((j) => scores[j] >= tau);
          }
        }
        thresholds[row] = tau;
        keptCount[row] = kept.length;
        keptPairs += kept.length;
        const oo = offsetOf(layout, Hq, Nq, D, b, h, i);
        if (kept.length === 0) {
          emptyRows++;
          lse[row] = -Infinity;
          continue; // output stays 0
        }
        let m = -Infinity;
        for (const j of kept) m = Math.max(m, scores[j]);
        let sum = 0;
        acc.fill(0);
        for (const j of kept) {
          const p = E(scores[j] - m);
          sum += p;
          const vo = offsetOf(layout, Hkv, Nk, D, b, g, j);
          for (let d = 0; d < D; d++) acc[d] += p * v[vo + d];
        }
        for (let d = 0; d < D; d++) output[oo + d] = acc[d] / sum;
        lse[row] = m + Math.log(sum);
      }
    }
  }
  if (!sparse) blocksVisited = blocksDense;
  return {
    output, lse, thresholds, allowedCount, keptCount, sparse, selection, entries, numQueryBlocks: nQB, numKeyBlocks: nKB,
    stats: { density: allowedPairs ? keptPairs / allowedPairs : 0, keptPairs, allowedPairs, blocksVisited, blocksDense, emptyRows },
  };
}

/** Minimal view of a library BlockLayout (structural, so the oracle does not import the library). */
export interface LayoutLike {
  batch: number;
  heads: number;
  seqQ: number;
  seqK: number;
  blockSize: number;
  queryBlockSize?: number;
  causal: boolean;
  window: readonly [number, number] | null;
  globalTokens: number;
  numQueryBlocks: number;
  selectedBlocks(b: number, h: number, I: number): number[];
}

/** The library layout's selected blocks, per layout row r = (b*heads + h)*nQB + I. */
export function selectionOf(layout: LayoutLike): number[][] {
  const out: number[][] = [];
  for (let b = 0; b < layout.batch; b++) {
    for (let h = 0; h < layout.heads; h++) {
      for (let I = 0; I < layout.numQueryBlocks; I++) out.push(layout.selectedBlocks(b, h, I));
    }
  }
  return out;
}

/** Oracle options "given the same selection" as a library layout (window, sinks, block size, causal, selected blocks). */
export function optionsFromLayout(layout: LayoutLike): OracleOptions {
  return {
    causal: layout.causal,
    window: layout.window ? [layout.window[0], layout.window[1]] : undefined,
    globalTokens: layout.globalTokens,
    blockSize: layout.blockSize,
    queryBlockSize: layout.queryBlockSize,
    selected: selectionOf(layout),
  };
}
