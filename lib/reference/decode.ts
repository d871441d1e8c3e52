/**
 * Decode against a paged cache, the reference (docs/decode.md): per query token, the cached
 * pages are ordered by an estimate read from the page metadata and kept by ratio, count, or
 * PSA's progressive rule on the exact visited mass; then attention over the window, the sinks
 * and the kept pages, with top-k and either softmax. Scores and sums in float64, the softmax
 * exponentials as the attention reference computes them.
 */
import type { KvCache } from '../kv-cache';
import type { Estimate, Selection, TopK } from '../problem';
import type { ResolvedSoftmax } from '../softmax';
import { ceilTolerant } from '../validate';
import { expNonPositive, makeExp } from './exp';
import { kthLargest } from './kth-largest';

export interface DecodeProblem {
  /** Cache sequences, one per batch row of q. */
  sequences: number[];
  heads: number;
  kvHeads: number;
  /** Query tokens per sequence (the newest m of each). */
  m: number;
  headDim: number;
  scale: number;
  softmax: ResolvedSoftmax;
  /** Window reach before / after the query position; -1: no window. */
  windowLeft: number;
  windowRight: number;
  globalTokens: number;
  selection: Selection | null;
  topK: TopK;
  returnLse: boolean;
  /** Also return, per row, the pages it attended to. */
  returnPages: boolean;
}

export interface DecodeStats {
  /** Kept (query, key) pairs over causally allowed pairs. */
  density: number;
  keptPairs: number;
  allowedPairs: number;
  /** Sum over query rows of the pages holding a key the row attends to. */
  pagesVisited: number;
  /** Sum over query rows of the pages a dense decode reads. */
  pagesDense: number;
  /** Distinct (sequence, kv head, page) read by the call: its key/value traffic in pages. */
  pagesRead: number;
  /** Distinct (sequence, kv head, page) a dense decode reads. */
  pagesReadDense: number;
  emptyRows: number;
  /**
   * R/(Z+R) per row, max and mean: the estimated share of the attention mass in the pages left
   * out (exact Z over what was kept, R from the estimates of the rest). With 'bound' it is a
   * certificate: the exact dropped share is at most this. 0 without page selection.
   */
  droppedMass: { max: number; mean: number };
}

export interface DecodeOutput {
  output: Float32Array;
  lse: Float32Array | null;
  /** Per row (b, h, i): the pages holding a key it attended to, ascending (with returnPages). */
  pages: Int32Array[] | null;
  stats: DecodeStats;
}

/** Per page and row: the estimate from the page metadata (the page's valid keys). */
function pageEstimate(kind: Estimate, q: Float64Array, qOff: number, c: KvCache, page: number, head: number, count: number, scale: number): number {
  const s = c.storage;
  const D = c.headDim;
  const meta = (page * c.kvHeads + head) * D;
  let e = 0;
  if (kind === 'bound') {
    for (let d = 0; d < D; d++) {
      const x = q[qOff + d];
      e += Math.max(x * s.min[meta + d], x * s.max[meta + d]);
    }
    return scale * e;
  }
  let varTerm = 0;
  for (let d = 0; d < D; d++) {
    const mean = s.sum[meta + d] / count;
    e += q[qOff + d] * mean;
    if (kind === 'moment') varTerm += q[qOff + d] * q[qOff + d] * Math.max(0, s.sumSq[meta + d] / count - mean * mean);
  }
  return scale * e + (kind === 'moment' ? ((scale * scale) / 2) * varTerm : 0);
}

function logSumExp(xs: number[]): number {
  let m = -Infinity;
  for (const x of xs) if (x > m) m = x;
  if (m === -Infinity) return -Infinity;
  let sum = 0;
  for (const x of xs) sum += Math.exp(x - m);
  return m + Math.log(sum);
}

function logAddExp(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/** One query row's position and the key ranges its window and sinks reach (empty ranges have hi < lo). */
interface RowKeys {
  pos: number;
  wLo: number;
  wHi: number;
  /** Sinks are keys 0 .. sinkHi. */
  sinkHi: number;
  inWindowOrSink: (j: number) => boolean;
}

function span(lo: number, hi: number): number {
  return hi >= lo ? hi - lo + 1 : 0;
}

/** Keys of [lo, hi] the window or the sinks reach. */
function windowSinkCount(k: RowKeys, lo: number, hi: number): number {
  const w = span(Math.max(lo, k.wLo), Math.min(hi, k.wHi));
  const s = span(lo, Math.min(hi, k.sinkHi));
  const both = span(Math.max(lo, k.wLo), Math.min(hi, k.wHi, k.sinkHi));
  return w + s - both;
}

export function decodeReference(p: DecodeProblem, q: Float32Array, cache: KvCache): DecodeOutput {
  const { heads: H, kvHeads: Hkv, m, headDim: D, scale } = p;
  const group = H / Hkv;
  const ps = cache.pageSize;
  const st = cache.storage;
  const B = p.sequences.length;
  const output = new Float32Array(B * H * m * D);
  const lse = p.returnLse ? new Float32Array(B * H * m) : null;
  const rowPagesOut: Int32Array[] | null = p.returnPages ? new Array(B * H * m) : null;
  const q64 = Float64Array.from(q);
  const E = makeExp(p.softmax);
  const exact = p.softmax.kind === 'exact';
  const sparse = p.windowLeft >= 0 || p.globalTokens > 0 || p.selection !== null;
  let keptPairs = 0;
  let allowedPairs = 0;
  let pagesVisited = 0;
  let pagesDense = 0;
  let pagesRead = 0;
  let pagesReadDense = 0;
  let emptyRows = 0;
  let droppedMax = 0;
  let droppedSum = 0;
  const rowsTotal = B * H * m;

  const longest = Math.max(...p.sequences.map((q) => st.lengths[q]));
  const idxBuf = new Int32Array(longest); // storage offset of each attended key of a row
  const scBuf = new Float64Array(longest); // its score
  for (let b = 0; b < B; b++) {
    const seq = p.sequences[b];
    const L = st.lengths[seq];
    const pages = cache.pagesOf(seq);
    const nPages = pages.length;
    const validKeys = (J: number) => Math.min(ps, L - J * ps);
    pagesReadDense += Hkv * nPages;
    for (let hk = 0; hk < Hkv; hk++) {
      const readHere = new Uint8Array(nPages);
      // Per row of the group: the kept pages, chosen together when shared across the group.
      const rows: { h: number; i: number; keys: RowKeys; kept: Uint8Array; dropped: number }[] = [];
      for (let i = 0; i < m; i++) {
        const pos = L - m + i;
        const wLo = p.windowLeft >= 0 ? Math.max(0, pos - p.windowLeft) : 1;
        const wHi = p.windowLeft >= 0 ? Math.min(pos, pos + p.windowRight) : 0;
        const sinkHi = Math.min(pos, p.globalTokens - 1);
        const keys: RowKeys = { pos, wLo, wHi, sinkHi, inWindowOrSink: (j) => j <= sinkHi || (j >= wLo && j <= wHi) };
        const rowPages = Math.floor(pos / ps) + 1;
        // Candidates: pages with a causally allowed key outside the window and the sinks.
        const cand: number[] = [];
        const nCand: number[] = [];
        if (p.selection) {
          for (let J = 0; J < rowPages; J++) {
            const lo = J * ps;
            const hi = Math.min(pos, lo + ps - 1);
            const n = span(lo, hi) - windowSinkCount(keys, lo, hi);
            if (n > 0) {
              cand.push(J);
              nCand.push(n);
            }
          }
        }
        const groupHeads = Array.from({ length: group }, (_, g) => hk * group + g);
        const est = groupHeads.map((h) => cand.map((J) => pageEstimate(p.selection?.estimate ?? 'mean', q64, ((b * H + h) * m + i) * D, cache, pages[J], hk, validKeys(J), scale)));
        const chosen = p.selection ? choosePages(p, q64, cache, b, i, keys, pages, cand, nCand, est, groupHeads) : groupHeads.map(() => ({ kept: new Uint8Array(0), dropped: 0 }));
        groupHeads.forEach((h, g) => {
          const kept = new Uint8Array(rowPages);
          if (!sparse) kept.fill(1);
          for (let c = 0; c < cand.length; c++) if (chosen[g].kept[c]) kept[cand[c]] = 1;
          rows.push({ h, i, keys, kept, dropped: chosen[g].dropped });
        });
      }
      for (const row of rows) {
        const { h, i, keys, kept } = row;
        const pos = keys.pos;
        const o = (b * H + h) * m + i;
        const qOff = o * D;
        allowedPairs += pos + 1;
        pagesDense += Math.floor(pos / ps) + 1;
        droppedMax = Math.max(droppedMax, row.dropped);
        droppedSum += row.dropped;
        // Allowed keys: causal, and (dense, or in the window, a sink, or a kept page). Page by
        // page, skipping in O(1) a page neither kept nor reached by the window or the sinks.
        let count = 0;
        const visited: number[] = [];
        for (let J = 0; J * ps <= pos; J++) {
          const lo = J * ps;
          const hi = Math.min(pos, lo + ps - 1);
          const whole = kept[J] === 1;
          if (!whole && windowSinkCount(keys, lo, hi) === 0) continue;
          const page = cache.keyOffset(pages[J], hk, 0);
          for (let j = lo; j <= hi; j++) {
            if (!whole && !keys.inWindowOrSink(j)) continue;
            const off = page + (j - lo) * D;
            let s = 0;
            for (let d = 0; d < D; d++) s += q64[qOff + d] * st.keys[off + d];
            idxBuf[count] = off;
            scBuf[count++] = scale * s;
          }
          visited.push(J);
        }
        const sc = scBuf.subarray(0, count);
        pagesVisited += visited.length;
        if (rowPagesOut) rowPagesOut[o] = Int32Array.from(visited);
        for (const J of visited) readHere[J] = 1;
        let tau = -Infinity;
        if (p.topK) {
          const k = p.topK.kind === 'count' ? p.topK.k : Math.max(1, ceilTolerant(p.topK.ratio * sc.length));
          if (sc.length > k) tau = kthLargest(sc.slice(), sc.length, k);
        }
        let mx = -Infinity;
        for (const s of sc) if (!(s < tau) && s > mx) mx = s;
        let sum = 0;
        let n = 0;
        const acc = new Float64Array(D);
        for (let c = 0; c < sc.length; c++) {
          const s = sc[c];
          if (s < tau) continue;
          const w = exact ? expNonPositive(s - mx) : E(s - mx);
          n++;
          sum += w;
          const off = idxBuf[c]; // keys and values share offsets
          for (let d = 0; d < D; d++) acc[d] += w * st.values[off + d];
        }
        keptPairs += n;
        if (n === 0) emptyRows++;
        const inv = sum > 0 ? 1 / sum : 0;
        for (let d = 0; d < D; d++) output[qOff + d] = acc[d] * inv;
        if (lse) lse[o] = n === 0 ? -Infinity : mx + Math.log(sum);
      }
      for (let J = 0; J < nPages; J++) pagesRead += readHere[J];
    }
  }
  return {
    output,
    lse,
    pages: rowPagesOut,
    stats: {
      density: allowedPairs > 0 ? keptPairs / allowedPairs : 0,
      keptPairs, allowedPairs, pagesVisited, pagesDense, pagesRead, pagesReadDense, emptyRows,
      droppedMass: { max: droppedMax, mean: rowsTotal > 0 ? droppedSum / rowsTotal : 0 },
    },
  };
}

/**
 * The kept candidates of one query row for each head of a kv group (the same set for every
 * head when shared), and each head's R/(Z+R) for that set.
 */
function choosePages(
  p: DecodeProblem, q: Float64Array, cache: KvCache, b: number, i: number, keys: RowKeys, pages: Int32Array,
  cand: number[], nCand: number[], est: number[][], groupHeads: number[],
): { kept: Uint8Array; dropped: number }[] {
  const sel = p.selection!;
  const nc = cand.length;
  const order = (e: number[]) => Array.from({ length: nc }, (_, c) => c).sort((x, y) => e[y] - e[x] || x - y);
  // Shared across the group: one order, by the mean of the group's estimates.
  const meanEst = Array.from({ length: nc }, (_, c) => est.reduce((s, e) => s + e[c], 0) / est.length);
  const orders = sel.shareAcrossGroup ? groupHeads.map(() => order(meanEst)) : est.map(order);
  // Exact log-mass per head: of the window and sinks, and of each candidate page's candidate keys.
  const ps = cache.pageSize;
  const st = cache.storage;
  const D = p.headDim;
  const hk = Math.floor(groupHeads[0] / (p.heads / p.kvHeads));
  const logMass = groupHeads.map((h) => {
    const qOff = ((b * p.heads + h) * p.m + i) * D;
    const score = (j: number) => {
      const J = Math.floor(j / ps);
      const off = cache.keyOffset(pages[J], hk, j - J * ps);
      let s = 0;
      for (let d = 0; d < D; d++) s += q[qOff + d] * st.keys[off + d];
      return p.scale * s;
    };
    const xs: number[] = [];
    for (let j = 0; j <= keys.sinkHi; j++) xs.push(score(j));
    for (let j = Math.max(keys.wLo, keys.sinkHi + 1); j <= keys.wHi; j++) xs.push(score(j));
    const base = logSumExp(xs);
    // Scored only when the rule reaches the page: progressive never reads the pages after its stop.
    const memo = new Float64Array(cand.length).fill(NaN);
    const perPage = (c: number) => {
      if (Number.isNaN(memo[c])) {
        const J = cand[c];
        const page: number[] = [];
        for (let j = J * ps; j <= Math.min(keys.pos, J * ps + ps - 1); j++) if (!keys.inWindowOrSink(j)) page.push(score(j));
        memo[c] = logSumExp(page);
      }
      return memo[c];
    };
    return { base, perPage };
  });
  const logWeight = (g: number, c: number) => Math.log(nCand[c]) + est[g][c];
  const clamp = (n: number) => Math.min(Math.max(n, sel.minBlocks), sel.maxBlocks, nc);

  const progressive = (g: number) => progressiveCount(logMass[g], orders[g], (c) => logWeight(g, c), sel.value);
  const counts: number[] = groupHeads.map((_, g) => {
    if (sel.mode === 'ratio') return clamp(ceilTolerant(sel.value * nc));
    if (sel.mode === 'topBlocks') return clamp(sel.value);
    return clamp(progressive(g));
  });
  // Shared: the shortest prefix of the shared order that meets every head's own rule.
  if (sel.shareAcrossGroup) counts.fill(Math.max(...counts));
  return groupHeads.map((_, g) => {
    const kept = new Uint8Array(nc);
    for (let r = 0; r < counts[g]; r++) kept[orders[g][r]] = 1;
    let lZ = logMass[g].base;
    let lR = -Infinity;
    for (let c = 0; c < nc; c++) {
      if (kept[c]) lZ = logAddExp(lZ, logMass[g].perPage(c));
      else lR = logAddExp(lR, logWeight(g, c));
    }
    const dropped = lR === -Infinity ? 0 : 1 / (1 + Math.exp(lZ - lR));
    return { kept, dropped };
  });
}

/**
 * PSA's rule: the shortest prefix P of `order` with Z(P) >= τ (Z(P) + R(P)), Z exact over the
 * window, sinks and P, R the estimated mass of the rest; in logs, as
 * ln(1 - τ) + ln Z >= ln τ + ln R.
 */
function progressiveCount(mass: { base: number; perPage: (c: number) => number }, order: number[], logWeight: (c: number) => number, tau: number): number {
  const n = order.length;
  const suffix = new Float64Array(n + 1).fill(-Infinity); // ln R after keeping the first r
  for (let r = n - 1; r >= 0; r--) suffix[r] = logAddExp(suffix[r + 1], logWeight(order[r]));
  const a = Math.log(1 - tau);
  const t = Math.log(tau);
  let lZ = mass.base;
  for (let r = 0; r <= n; r++) {
    if (a + lZ >= t + suffix[r]) return r;
    if (r < n) lZ = logAddExp(lZ, mass.perPage(order[r]));
  }
  return n;
}
