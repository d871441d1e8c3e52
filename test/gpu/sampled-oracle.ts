/**
 * A float64 oracle for a sample of query rows at sizes where the full oracle is too slow: the
 * allowed keys of a row are re-derived element by element from the contract (causal, window,
 * sinks, the selected blocks of the layout the device used), the kept keys from the device's
 * thresholds (ties kept, float32 scores vs float64: a slack of 1e-5), then softmax and P·V.
 */
import type { AttentionOptions, BlockLayout } from '../../lib/index';
import type { ShapeLike } from '../data';
import { offsetOf, softmaxE } from '../oracle';

export interface SampledCheck {
  rows: { b: number; h: number; i: number }[];
  /** Relative Frobenius error of `output` on the sampled rows. */
  relFrob(output: Float32Array): number;
  expectLse(lse: Float32Array, absTol: number): void;
}

export function sampledRows(
  d: { q: Float32Array; k: Float32Array; v: Float32Array }, s: ShapeLike, o: AttentionOptions, layout: BlockLayout | undefined,
  thresholds: Float32Array, count: number, seed: number,
): SampledCheck {
  const Hq = s.heads;
  const Hkv = s.kvHeads ?? s.heads;
  const Nq = s.seqQ;
  const Nk = s.seqK ?? s.seqQ;
  const D = s.headDim;
  const lay = s.layout ?? 'bhnd';
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const causal = o.causal ?? false;
  const win = o.window === undefined ? null : typeof o.window === 'number' ? (causal ? [o.window - 1, 0] : [o.window - 1, o.window - 1]) : o.window;
  const sinks = o.globalTokens ?? 0;
  const sparse = layout !== undefined;
  const E = softmaxE(o.softmax as never);
  let a = seed >>> 0;
  const rnd = () => ((a = (a * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const rows = Array.from({ length: count }, () => ({ b: Math.floor(rnd() * s.batch), h: Math.floor(rnd() * Hq), i: Math.floor(rnd() * Nq) }));
  rows.push({ b: 0, h: 0, i: Nq - 1 }, { b: 0, h: Hq - 1, i: 0 });

  const want: { out: Float64Array; lse: number }[] = rows.map(({ b, h, i }) => {
    const kvh = Math.floor(h / (Hq / Hkv));
    const p = i + Nk - Nq;
    const bs = layout?.blockSize ?? 64;
    const selected = new Set(sparse ? layout!.selectedBlocks(b, h, Math.floor(i / bs)) : []);
    const tau = thresholds[(b * Hq + h) * Nq + i];
    const qo = offsetOf(lay, Hq, Nq, D, b, h, i);
    const scores: number[] = [];
    const keys: number[] = [];
    for (let j = 0; j < Nk; j++) {
      if (causal && j > p) continue;
      if (sparse) {
        const inWin = win !== null && j >= p - win[0] && j <= p + win[1];
        if (!(inWin || j < sinks || selected.has(Math.floor(j / bs)))) continue;
      }
      const ko = offsetOf(lay, Hkv, Nk, D, b, kvh, j);
      let dot = 0;
      for (let t = 0; t < D; t++) dot += d.q[qo + t] * d.k[ko + t];
      const sc = scale * dot;
      if (tau !== -Infinity && sc < tau - 1e-5 * Math.max(1, Math.abs(tau))) continue;
      scores.push(sc);
      keys.push(j);
    }
    const out = new Float64Array(D);
    if (!scores.length) return { out, lse: -Infinity };
    const m = Math.max(...scores);
    let l = 0;
    for (let x = 0; x < scores.length; x++) {
      const w = E(scores[x] - m);
      l += w;
      const vo = offsetOf(lay, Hkv, Nk, D, b, kvh, keys[x]);
      for (let t = 0; t < D; t++) out[t] += w * d.v[vo + t];
    }
    for (let t = 0; t < D; t++) out[t] /= l;
    return { out, lse: m + Math.log(l) };
  });

  return {
    rows,
    relFrob(output) {
      let num = 0;
      let den = 0;
      rows.forEach(({ b, h, i }, r) => {
        const oo = offsetOf(lay, Hq, Nq, D, b, h, i);
        for (let t = 0; t < D; t++) {
          const diff = output[oo + t] - want[r].out[t];
          num += diff * diff;
          den += want[r].out[t] ** 2;
        }
      });
      return den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
    },
    expectLse(lse, absTol) {
      rows.forEach(({ b, h, i }, r) => {
        const g = lse[(b * Hq + h) * Nq + i];
        const w = want[r].lse;
        if (w === -Infinity ? g !== -Infinity : !(Math.abs(g - w) <= absTol * Math.max(1, Math.abs(w)))) throw new Error(`lse (${b}, ${h}, ${i}): want ${w}, got ${g}`);
      });
    },
  };
}
