/**
 * The float64 oracle of decode (docs/decode.md), independent of lib/: it reads each sequence's
 * keys and values as plain dense arrays, derives page statistics from them itself, and applies
 * the rules one key at a time: causal positions p_i = L - m + i, window, sinks, candidates,
 * the three estimates, ratio / topBlocks / PSA's progressive rule with the min/max clamp,
 * shared selection across a group, top-k with ties kept, both softmaxes.
 */
import { ceilTol, softmaxE, OracleSoftmax } from './oracle';

export interface DecodeOracleOptions {
  heads: number;
  pageSize: number;
  scale?: number;
  softmax?: OracleSoftmax;
  window?: number | [number, number];
  globalTokens?: number;
  blocks?: { ratio?: number; topBlocks?: number; progressive?: number; minBlocks?: number; maxBlocks?: number };
  estimate?: 'mean' | 'bound' | 'moment';
  shareAcrossGroup?: boolean;
  topK?: number;
  topKRatio?: number;
}

/** One sequence's cache content: keys and values [kvHeads][L][D]. */
export interface SequenceKV {
  k: Float32Array;
  v: Float32Array;
  length: number;
}

export interface DecodeOracleResult {
  output: Float64Array;
  lse: Float64Array;
  keptPairs: number;
  allowedPairs: number;
  pagesVisited: number;
  emptyRows: number;
  /** Per row (b, h, i): kept pages, ascending. */
  pages: number[][];
  /** Per row: every page holding a key the row attends to, ascending. */
  visited: number[][];
  /** Per row: R/(Z+R) of the kept set. */
  estimatedDropped: number[];
  /** Per row: the exact share of the dense attention mass (exp) outside the attended keys. */
  exactDropped: number[];
}

export function decodeOracle(q: Float32Array, seqs: SequenceKV[], kvHeads: number, D: number, o: DecodeOracleOptions): DecodeOracleResult {
  const B = seqs.length;
  const H = o.heads;
  const m = q.length / (B * H * D);
  const ps = o.pageSize;
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const E = softmaxE(o.softmax);
  const win = o.window === undefined ? null : typeof o.window === 'number' ? [o.window - 1, 0] : o.window;
  const G = o.globalTokens ?? 0;
  const sel = o.blocks;
  const sparse = win !== null || G > 0 || sel !== undefined;
  const estimate = o.estimate ?? 'moment';
  const group = H / kvHeads;
  const res: DecodeOracleResult = {
    output: new Float64Array(B * H * m * D), lse: new Float64Array(B * H * m), keptPairs: 0, allowedPairs: 0, pagesVisited: 0, emptyRows: 0,
    pages: [], visited: [], estimatedDropped: [], exactDropped: [],
  };
  for (let b = 0; b < B; b++) {
    const { k, v, length: L } = seqs[b];
    const key = (hk: number, j: number) => k.subarray((hk * L + j) * D, (hk * L + j + 1) * D);
    const val = (hk: number, j: number) => v.subarray((hk * L + j) * D, (hk * L + j + 1) * D);
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < m; i++) {
        const pos = L - m + i;
        const qv = (hh: number) => q.subarray(((b * H + hh) * m + i) * D, ((b * H + hh) * m + i + 1) * D);
        const score = (hh: number, j: number) => {
          const a = qv(hh);
          const kk = key(hk, j);
          let s = 0;
          for (let d = 0; d < D; d++) s += a[d] * kk[d];
          return scale * s;
        };
        const ws = (j: number) => j < G || (win !== null && j >= pos - win[0] && j <= pos + win[1]);
        // Candidates and their candidate-key counts.
        const cand: number[] = [];
        const nCand: number[] = [];
        for (let J = 0; J * ps <= pos; J++) {
          let n = 0;
          for (let j = J * ps; j < Math.min(L, J * ps + ps); j++) if (j <= pos && !ws(j)) n++;
          if (n > 0 && sel) {
            cand.push(J);
            nCand.push(n);
          }
        }
        const est = (hh: number, J: number) => {
          const a = qv(hh);
          const n = Math.min(ps, L - J * ps);
          let e = 0;
          let varTerm = 0;
          for (let d = 0; d < D; d++) {
            let mn = Infinity;
            let mxv = -Infinity;
            let sum = 0;
            for (let j = J * ps; j < J * ps + n; j++) {
              const x = key(hk, j)[d];
              mn = Math.min(mn, x);
              mxv = Math.max(mxv, x);
              sum += x;
            }
            const mean = sum / n;
            let vsum = 0;
            for (let j = J * ps; j < J * ps + n; j++) vsum += (key(hk, j)[d] - mean) ** 2;
            if (estimate === 'bound') e += Math.max(a[d] * mn, a[d] * mxv);
            else e += a[d] * mean;
            varTerm += a[d] * a[d] * (vsum / n);
          }
          return scale * e + (estimate === 'moment' ? ((scale * scale) / 2) * varTerm : 0);
        };
        const groupHeads = o.shareAcrossGroup ? Array.from({ length: group }, (_, g) => hk * group + g) : [h];
        const e = cand.map((J) => groupHeads.reduce((s, hh) => s + est(hh, J), 0) / groupHeads.length);
        const ownE = cand.map((J) => est(h, J));
        const order = cand.map((_, c) => c).sort((x, y) => e[y] - e[x] || x - y);
        const clamp = (n: number) => Math.min(Math.max(n, sel?.minBlocks ?? 0), sel?.maxBlocks ?? Infinity, cand.length);
        // PSA's rule for head hh over the shared order: Z exact (exp), R from hh's estimates.
        const massRule = (hh: number, tau: number) => {
          const eh = cand.map((J) => est(hh, J));
          let c = -Infinity;
          for (let j = 0; j <= pos; j++) c = Math.max(c, score(hh, j));
          for (const x of eh) c = Math.max(c, x);
          for (let r = 0; r <= cand.length; r++) {
            const keptSet = new Set(order.slice(0, r).map((x) => cand[x]));
            let Z = 0;
            for (let j = 0; j <= pos; j++) if (ws(j) || keptSet.has(Math.floor(j / ps))) Z += Math.exp(score(hh, j) - c);
            let R = 0;
            for (let x = 0; x < cand.length; x++) if (!keptSet.has(cand[x])) R += nCand[x] * Math.exp(eh[x] - c);
            if (Z >= tau * (Z + R)) return r;
          }
          return cand.length;
        };
        let count = 0;
        if (sel?.ratio !== undefined) count = clamp(ceilTol(sel.ratio * cand.length));
        else if (sel?.topBlocks !== undefined) count = clamp(sel.topBlocks);
        else if (sel?.progressive !== undefined) count = clamp(Math.max(...groupHeads.map((hh) => massRule(hh, sel.progressive!))));
        const kept = new Set(order.slice(0, count).map((x) => cand[x]));
        res.pages.push([...kept].sort((x, y) => x - y));

        // Attended keys, top-k, softmax.
        const A: number[] = [];
        for (let j = 0; j <= pos; j++) if (!sparse || ws(j) || kept.has(Math.floor(j / ps))) A.push(j);
        res.allowedPairs += pos + 1;
        const visited = [...new Set(A.map((j) => Math.floor(j / ps)))].sort((x, y) => x - y);
        res.pagesVisited += visited.length;
        res.visited.push(visited);
        const s = A.map((j) => score(h, j));
        let tau = -Infinity;
        const kk = o.topK ?? (o.topKRatio !== undefined ? Math.max(1, ceilTol(o.topKRatio * A.length)) : undefined);
        if (kk !== undefined && A.length > kk) tau = [...s].sort((x, y) => y - x)[kk - 1];
        const keep = s.map((x) => x >= tau);
        const mx = Math.max(-Infinity, ...s.filter((_, c) => keep[c]));
        let sum = 0;
        const row = (b * H + h) * m + i;
        const acc = new Float64Array(D);
        s.forEach((x, c) => {
          if (!keep[c]) return;
          const w = E(x - mx);
          sum += w;
          const vv = val(hk, A[c]);
          for (let d = 0; d < D; d++) acc[d] += w * vv[d];
        });
        const n = keep.filter(Boolean).length;
        res.keptPairs += n;
        if (n === 0) res.emptyRows++;
        for (let d = 0; d < D; d++) res.output[row * D + d] = n ? acc[d] / sum : 0;
        res.lse[row] = n ? mx + Math.log(sum) : -Infinity;

        // Dropped mass: estimated R/(Z+R) of the kept pages, and the exact share outside A.
        let c0 = -Infinity;
        for (let j = 0; j <= pos; j++) c0 = Math.max(c0, score(h, j));
        for (const x of ownE) c0 = Math.max(c0, x);
        let Z = 0;
        let total = 0;
        for (let j = 0; j <= pos; j++) {
          const w = Math.exp(score(h, j) - c0);
          total += w;
          if (!sparse || ws(j) || kept.has(Math.floor(j / ps))) Z += w;
        }
        let R = 0;
        cand.forEach((J, x) => {
          if (!kept.has(J)) R += nCand[x] * Math.exp(ownE[x] - c0);
        });
        res.estimatedDropped.push(Z + R > 0 ? R / (Z + R) : 0);
        res.exactDropped.push(total > 0 ? (total - Z) / total : 0);
      }
    }
  }
  return res;
}
