/**
 * The float64 oracle of the backward pass, independent of lib/: given the forward's kept sets
 * (the allowed keys from the layout's geometry and selected blocks, the top-k thresholds), it
 * computes O, then dq, dk, dv from the formulas of docs/contract.md#backward, and a loss with
 * every row maximum and kept set frozen, for central finite differences.
 */
import { offsetOf, OracleShape, OracleSoftmax, ORACLE_POLY, polyExp2 } from './oracle';

export interface KeptSets {
  /** Per row (b, h, i), the kept key indices. */
  kept: number[][];
}

/** Given the same selection: allowed keys from causal, window, sinks and selected blocks, then s >= tau. */
export function keptSets(
  q: Float32Array | Float64Array, k: Float32Array | Float64Array, shape: OracleShape,
  g: { causal: boolean; window: readonly [number, number] | null; globalTokens: number; blockSize: number; queryBlockSize?: number; selected: ReadonlyArray<ReadonlyArray<number>> | null },
  thresholds: ArrayLike<number> | null, scale: number,
): KeptSets {
  const { batch: B, heads: H, headDim: D, seqQ: Nq } = shape;
  const Hkv = shape.kvHeads ?? H;
  const Nk = shape.seqK ?? Nq;
  const layout = shape.layout ?? 'bhnd';
  const qbs = g.queryBlockSize ?? g.blockSize; // rows per query block of `selected`
  const nQB = Math.ceil(Nq / qbs);
  const kept: number[][] = [];
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / (H / Hkv));
      for (let i = 0; i < Nq; i++) {
        const p = i + Nk - Nq;
        const sel = g.selected ? new Set(g.selected[(b * H + h) * nQB + Math.floor(i / qbs)]) : null;
        const sparse = g.selected !== null;
        const row: number[] = [];
        const tau = thresholds ? thresholds[(b * H + h) * Nq + i] : -Infinity;
        for (let j = 0; j < Nk; j++) {
          if (g.causal && j > p) continue;
          if (sparse) {
            const inWin = g.window !== null && j >= p - g.window[0] && j <= p + g.window[1];
            if (!(inWin || j < g.globalTokens || sel!.has(Math.floor(j / g.blockSize)))) continue;
          }
          if (tau !== -Infinity) {
            const qo = offsetOf(layout, H, Nq, D, b, h, i);
            const ko = offsetOf(layout, Hkv, Nk, D, b, hk, j);
            let s = 0;
            for (let d = 0; d < D; d++) s += q[qo + d] * k[ko + d];
            // float32 library scores vs float64 here: keep the threshold key itself.
            if (scale * s < tau - 1e-6 * Math.max(1, Math.abs(tau))) continue;
          }
          row.push(j);
        }
        kept.push(row);
      }
    }
  }
  return { kept };
}

/** E and E' of the softmax option, in float64 (coefficients rounded to float32). */
function exponentials(option: OracleSoftmax | undefined): { E: (x: number) => number; dE: (x: number) => number } {
  if (option === undefined || option === 'exact') return { E: Math.exp, dE: Math.exp };
  const coeffs = option === 'poly' ? ORACLE_POLY[3].coefficients : option.coefficients ?? ORACLE_POLY[option.degree ?? 3].coefficients;
  const c = Float64Array.from(coeffs, (x) => Math.fround(x));
  const L2E = Math.fround(Math.LOG2E);
  return {
    E: (x) => polyExp2(x * L2E, c),
    dE: (x) => {
      const t = x * L2E;
      if (t < -127) return 0;
      const n = Math.floor(t);
      const f = t - n;
      let dp = 0;
      for (let d = c.length - 1; d >= 1; d--) dp = dp * f + d * c[d];
      return L2E * dp * 2 ** n;
    },
  };
}

export interface BackwardOracle {
  output: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  /** Row maxima of the forward (frozen for finite differences). */
  rowMax: Float64Array;
}

type Arr = Float32Array | Float64Array;

export function backwardOracle(q: Arr, k: Arr, v: Arr, dO: Arr, shape: OracleShape, sets: KeptSets, scale: number, softmax?: OracleSoftmax, frozenMax?: Float64Array): BackwardOracle {
  const { batch: B, heads: H, headDim: D, seqQ: Nq } = shape;
  const Hkv = shape.kvHeads ?? H;
  const Nk = shape.seqK ?? Nq;
  const layout = shape.layout ?? 'bhnd';
  const { E, dE } = exponentials(softmax);
  const output = new Float64Array(q.length);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const rowMax = new Float64Array(B * H * Nq);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / (H / Hkv));
      for (let i = 0; i < Nq; i++) {
        const row = (b * H + h) * Nq + i;
        const kept = sets.kept[row];
        const qo = offsetOf(layout, H, Nq, D, b, h, i);
        if (!kept.length) continue;
        const s = kept.map((j) => {
          const ko = offsetOf(layout, Hkv, Nk, D, b, hk, j);
          let x = 0;
          for (let d = 0; d < D; d++) x += q[qo + d] * k[ko + d];
          return scale * x;
        });
        const m = frozenMax ? frozenMax[row] : Math.max(...s);
        rowMax[row] = m;
        const w = s.map((x) => E(x - m));
        const Z = w.reduce((a, c) => a + c, 0);
        kept.forEach((j, c) => {
          const vo = offsetOf(layout, Hkv, Nk, D, b, hk, j);
          for (let d = 0; d < D; d++) output[qo + d] += (w[c] / Z) * v[vo + d];
        });
        let Di = 0;
        for (let d = 0; d < D; d++) Di += dO[qo + d] * output[qo + d];
        kept.forEach((j, c) => {
          const ko = offsetOf(layout, Hkv, Nk, D, b, hk, j);
          let dP = 0;
          for (let d = 0; d < D; d++) dP += dO[qo + d] * v[ko + d];
          const dS = (dE(s[c] - m) / Z) * (dP - Di);
          for (let d = 0; d < D; d++) {
            dq[qo + d] += scale * dS * k[ko + d];
            dk[ko + d] += scale * dS * q[qo + d];
            dv[ko + d] += (w[c] / Z) * dO[qo + d];
          }
        });
      }
    }
  }
  return { output, dq, dk, dv, rowMax };
}

/** L = Σ dO · O with the kept sets and row maxima frozen: the function the analytic gradients differentiate. */
export function frozenLoss(q: Arr, k: Arr, v: Arr, dO: Arr, shape: OracleShape, sets: KeptSets, scale: number, softmax: OracleSoftmax | undefined, rowMax: Float64Array): number {
  const { output } = backwardOracle(q, k, v, dO, shape, sets, scale, softmax, rowMax);
  let L = 0;
  for (let i = 0; i < output.length; i++) L += dO[i] * output[i];
  return L;
}
