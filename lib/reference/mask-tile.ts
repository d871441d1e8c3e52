/** The element mask of a partial tile, shared by the reference forward and backward passes. */
import { causalLimit, MaskSpec, windowSinkRanges } from '../mask';

/** Set the disallowed scores of a partial tile to -inf, row by row, from the interval form of the mask. */
export function maskTile(spec: MaskSpec, scores: Float64Array, pitch: number, col: number, i0: number, rows: number, j0: number, cols: number, selected: boolean): void {
  const j1 = j0 + cols - 1;
  for (let ii = 0; ii < rows; ii++) {
    const i = i0 + ii;
    const row = ii * pitch + col - j0; // scores[row + j] is key j
    if (selected) {
      const last = Math.min(j1, causalLimit(spec, i));
      for (let j = Math.max(j0, last + 1); j <= j1; j++) scores[row + j] = -Infinity;
    } else {
      const [wLo, wHi, sLo, sHi] = windowSinkRanges(spec, i, j0, j1);
      for (let j = j0; j <= j1; j++) {
        if (!((j >= wLo && j <= wHi) || (j >= sLo && j <= sHi))) scores[row + j] = -Infinity;
      }
    }
  }
}
