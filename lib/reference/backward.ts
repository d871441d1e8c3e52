/**
 * The reference backward pass (docs/contract.md#backward): the kept sets of the forward (its
 * layout and thresholds) and each row's maximum are constants. Per row, with x_ij = s_ij - m_i,
 * Z_i = Σ_j E(x_ij), P_ij = E(x_ij) / Z_i, dP_ij = dO_i · v_j and D_i = dO_i · O_i:
 *   dS_ij = (E'(x_ij) / Z_i) (dP_ij - D_i)        (= P_ij (dP_ij - D_i) for exp)
 *   dq_i = scale Σ_j dS_ij k_j,  dk_j = scale Σ_i dS_ij q_i,  dv_j = Σ_i P_ij dO_i,
 * dk and dv summed over the query heads of a kv group; empty rows contribute nothing. The
 * forward's scores are recomputed tile by tile over the same layout, in float64.
 */
import { BLOCK_FULL, BLOCK_SELECTED, BlockLayout } from '../layout';
import type { Problem } from '../problem';
import { makeExp, makeExpDerivative } from './exp';
import { maskTile } from './mask-tile';
import { rowAccess } from './rows';

export interface Gradients {
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

export function backward(
  p: Problem, layout: BlockLayout, thresholds: Float32Array | null, q: Float32Array, k: Float32Array, v: Float32Array, dO: Float32Array,
): Gradients {
  const { batch, heads, kvHeads, seqQ, seqK, headDim: D, blockSize: bs, queryBlockSize: qbs, scale } = p;
  const group = heads / kvHeads;
  const nQB = layout.numQueryBlocks;
  const E = makeExp(p.softmax);
  const dE = makeExpDerivative(p.softmax);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const scores = new Float64Array(qbs * seqK);
  const o = new Float64Array(D);

  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const hk = Math.floor(h / group);
      const qa = rowAccess(p.memoryLayout, b, h, heads, seqQ, D);
      const ka = rowAccess(p.memoryLayout, b, hk, kvHeads, seqK, D);
      for (let I = 0; I < nQB; I++) {
        const r = (b * heads + h) * nQB + I;
        const e0 = layout.offsets[r];
        const e1 = layout.offsets[r + 1];
        const i0 = I * qbs;
        const rows = Math.min(seqQ, i0 + qbs) - i0;
        // Columns of the visited keys, and their scores with the element mask.
        const cols: number[] = [];
        for (let e = e0; e < e1; e++) {
          const j0 = layout.indices[e] * bs;
          const n = Math.min(seqK, j0 + bs) - j0;
          const col = cols.length;
          for (let j = j0; j < j0 + n; j++) cols.push(j);
          for (let ii = 0; ii < rows; ii++) {
            const qo = qa.base + (i0 + ii) * qa.stride;
            for (let c = 0; c < n; c++) {
              const ko = ka.base + (j0 + c) * ka.stride;
              let s = 0;
              for (let d = 0; d < D; d++) s += q[qo + d] * k[ko + d];
              scores[ii * seqK + col + c] = scale * s;
            }
          }
          if (!(layout.flags[e] & BLOCK_FULL)) maskTile(p.mask, scores, seqK, col, i0, rows, j0, n, (layout.flags[e] & BLOCK_SELECTED) !== 0);
        }
        const width = cols.length;
        for (let ii = 0; ii < rows; ii++) {
          const i = i0 + ii;
          const row = ii * seqK;
          const tau = thresholds ? thresholds[(b * heads + h) * seqQ + i] : -Infinity;
          const keep = (s: number) => s !== -Infinity && !(s < tau);
          let m = -Infinity;
          for (let c = 0; c < width; c++) if (keep(scores[row + c]) && scores[row + c] > m) m = scores[row + c];
          if (m === -Infinity) continue; // empty row
          let Z = 0;
          for (let c = 0; c < width; c++) if (keep(scores[row + c])) Z += E(scores[row + c] - m);
          // O_i and D_i = dO_i · O_i.
          const qo = qa.base + i * qa.stride;
          o.fill(0);
          for (let c = 0; c < width; c++) {
            const s = scores[row + c];
            if (!keep(s)) continue;
            const w = E(s - m) / Z;
            const vo = ka.base + cols[c] * ka.stride;
            for (let d = 0; d < D; d++) o[d] += w * v[vo + d];
          }
          let Di = 0;
          for (let d = 0; d < D; d++) Di += dO[qo + d] * o[d];
          for (let c = 0; c < width; c++) {
            const s = scores[row + c];
            if (!keep(s)) continue;
            const P = E(s - m) / Z;
            const ko = ka.base + cols[c] * ka.stride;
            let dP = 0;
            for (let d = 0; d < D; d++) dP += dO[qo + d] * v[ko + d];
            const dS = (dE(s - m) / Z) * (dP - Di);
            for (let d = 0; d < D; d++) {
              dq[qo + d] += scale * dS * k[ko + d];
              dk[ko + d] += scale * dS * q[qo + d];
              dv[ko + d] += P * dO[qo + d];
            }
          }
        }
      }
    }
  }
  return { dq: Float32Array.from(dq), dk: Float32Array.from(dk), dv: Float32Array.from(dv) };
}
