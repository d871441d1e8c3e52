/**
 * The reference forward pass, one query block at a time: scores for the visited key blocks
 * only (S = Q·Kᵀ·scale into a row-block scratch), the element mask on partial blocks, the
 * per-row top-k threshold, the softmax with E = exp or the polynomial, and O = P·V. Work
 * outside the layout is never done, so time follows density.
 */
import { BLOCK_FULL, BLOCK_SELECTED, BlockLayout } from '../layout';
import type { Problem } from '../problem';
import { ceilTolerant } from '../validate';
import { expNonPositive, makeExp } from './exp';
import { gemmABt, gemmABtAdd } from './gemm';
import { floorToFloat32, kthLargest } from './kth-largest';
import { maskTile } from './mask-tile';
import { rowAccess } from './rows';

/**
 * Query rows per pass. 16 rows of scores for every visited key (16 x seqK floats) stay in L2 up
 * to long sequences, where a whole 64-row block would spill to memory between the score, softmax
 * and P·V passes; K tiles are re-read per pass, from cache.
 */
const ROWS_PER_PASS = 16;

export interface ForwardOutput {
  output: Float32Array;
  lse: Float32Array | null;
  thresholds: Float32Array | null;
  keptPairs: number;
  emptyRows: number;
}

export function forward(p: Problem, layout: BlockLayout, q: Float32Array, k: Float32Array, v: Float32Array): ForwardOutput {
  const { batch, heads, kvHeads, seqQ, seqK, headDim: D, blockSize: bs, queryBlockSize: qbs, scale } = p;
  const group = heads / kvHeads;
  const nQB = layout.numQueryBlocks;
  const exp = makeExp(p.softmax);
  const exact = p.softmax.kind === 'exact'; // inlined: the call through `exp` costs a tenth of the pass
  const output = new Float32Array(q.length);
  const lse = p.returnLse ? new Float32Array(batch * heads * seqQ) : null;
  const thresholds = p.returnThresholds ? new Float32Array(batch * heads * seqQ) : null;
  // Working copies in float64 (see gemm.ts); the scores of ROWS_PER_PASS rows at a time.
  const q64 = Float64Array.from(q);
  const k64 = Float64Array.from(k);
  const scores = new Float64Array(ROWS_PER_PASS * (seqK + 8));
  const scratch = new Float64Array(seqK);
  const vt = new Float64Array(layout.numKeyBlocks * bs * D);
  const oBlock = new Float64Array(ROWS_PER_PASS * D);
  const rowSums = new Float64Array(ROWS_PER_PASS); // softmax denominators of a pass
  const colStart = new Int32Array(layout.numKeyBlocks + 1);
  let keptPairs = 0;
  let emptyRows = 0;

  for (let b = 0; b < batch; b++) {
    for (let hk = 0; hk < kvHeads; hk++) {
      const ka = rowAccess(p.memoryLayout, b, hk, kvHeads, seqK, D);
      transposeBlocks(v, ka.base, ka.stride, seqK, D, bs, vt);
      for (let h = hk * group; h < (hk + 1) * group; h++) {
        const qa = rowAccess(p.memoryLayout, b, h, heads, seqQ, D);
        for (let I = 0; I < nQB; I++) {
          const r = (b * heads + h) * nQB + I;
          const e0 = layout.offsets[r];
          const e1 = layout.offsets[r + 1];
          const blockEnd = Math.min(seqQ, I * qbs + qbs);
          for (let i0 = I * qbs; i0 < blockEnd; i0 += ROWS_PER_PASS) {
            const rows = Math.min(blockEnd - i0, ROWS_PER_PASS);
            // Column position of each visited key block in the score scratch.
            let width = 0;
            for (let e = e0; e < e1; e++) {
              colStart[e - e0] = width;
              const j0 = layout.indices[e] * bs;
              width += Math.min(seqK, j0 + bs) - j0;
            }
            // Rows of the scratch sit `pitch` apart: a power-of-two pitch would put every row in
            // the same L1 sets (measured: a third slower at 4096 keys).
            const pitch = width + 8;
            for (let e = e0; e < e1; e++) {
              const j0 = layout.indices[e] * bs;
              const cols = Math.min(seqK, j0 + bs) - j0;
              gemmABt(q64, qa.base + i0 * qa.stride, qa.stride, k64, ka.base + j0 * ka.stride, ka.stride, scores, colStart[e - e0], pitch, rows, cols, D, scale);
              if (!(layout.flags[e] & BLOCK_FULL)) {
                maskTile(p.mask, scores, pitch, colStart[e - e0], i0, rows, j0, cols, (layout.flags[e] & BLOCK_SELECTED) !== 0);
              }
            }
            oBlock.fill(0, 0, rows * D);
            for (let ii = 0; ii < rows; ii++) {
              const row = ii * pitch;
              let tau = -Infinity;
              if (p.topK) {
                let n = 0;
                for (let c = 0; c < width; c++) if (scores[row + c] !== -Infinity) scratch[n++] = scores[row + c];
                const kk = p.topK.kind === 'count' ? p.topK.k : Math.max(1, ceilTolerant(p.topK.ratio * n));
                if (n > kk) tau = floorToFloat32(kthLargest(scratch, n, kk));
              }
              // Row maximum over the kept scores (masked ones are -inf, so they never win).
              let m = -Infinity;
              if (tau === -Infinity) {
                for (let c = 0; c < width; c++) if (scores[row + c] > m) m = scores[row + c];
              } else {
                for (let c = 0; c < width; c++) {
                  const s = scores[row + c];
                  if (s >= tau && s > m) m = s;
                }
              }
              let sum = 0;
              let kept = 0;
              for (let c = 0; c < width; c++) {
                const s = scores[row + c];
                let pr = 0;
                // Only the mask (-inf) and the threshold drop a key: a NaN score (inputs not
                // checked) is kept and poisons the row, never turned into an empty row.
                if (s !== -Infinity && !(s < tau)) {
                  pr = exact ? expNonPositive(s - m) : exp(s - m);
                  sum += pr;
                  kept++;
                }
                scores[row + c] = pr;
              }
              keptPairs += kept;
              rowSums[ii] = sum;
              const o = (b * heads + h) * seqQ + i0 + ii;
              if (thresholds) thresholds[o] = tau;
              if (kept === 0) emptyRows++;
              if (lse) lse[o] = kept === 0 ? -Infinity : m + Math.log(sum);
            }
            for (let e = e0; e < e1; e++) {
              const j0 = layout.indices[e] * bs;
              const cols = Math.min(seqK, j0 + bs) - j0;
              gemmABtAdd(scores, colStart[e - e0], pitch, vt, j0 * D, bs, oBlock, 0, D, rows, D, cols, 1);
            }
            for (let ii = 0; ii < rows; ii++) {
              const sum = rowSums[ii];
              const inv = sum > 0 ? 1 / sum : 0;
              const dst = qa.base + (i0 + ii) * qa.stride;
              for (let d = 0; d < D; d++) output[dst + d] = oBlock[ii * D + d] * inv;
            }
          }
        }
      }
    }
  }
  return { output, lse, thresholds, keptPairs, emptyRows };
}

/**
 * V transposed one key block at a time: key j of block J, channel d at vt[J*bs*D + d*bs + j - J*bs].
 * Rows of a block's Vᵀ sit bs floats apart; transposing the whole sequence would put them
 * seqK floats apart, which for power-of-two lengths maps them all to one L1 set.
 */
function transposeBlocks(x: Float32Array, base: number, stride: number, n: number, D: number, bs: number, vt: Float64Array): void {
  for (let j = 0; j < n; j++) {
    const src = base + j * stride;
    const J = Math.floor(j / bs);
    const dst = J * bs * D + (j - J * bs);
    for (let d = 0; d < D; d++) vt[dst + d * bs] = x[src + d];
  }
}
