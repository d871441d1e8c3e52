/**
 * The floor of a page-selection rule: for each row, the fewest pages whose exact attention mass
 * (with the window and sinks, which are always read) leaves out at most `1 - tau` of the row's
 * mass. No estimate can read fewer pages at that dropped share; decode-budget.ts sets every
 * estimate's curve beside this one.
 */
export interface FloorRow {
  pagesRead: number;
  droppedMean: number;
  droppedMax: number;
}

export interface FloorCase {
  /** [heads, seq, dim] (bhnd, one sequence), and the sequence lengths whose last row is queried. */
  q: Float32Array;
  k: Float32Array;
  heads: number;
  seq: number;
  dim: number;
  lengths: number[];
  window: number;
  sinks: number;
  pageSize: number;
}

export function pageFloor(c: FloorCase, tau: number): FloorRow {
  const { heads: H, seq: N, dim: D, pageSize: ps } = c;
  const scale = 1 / Math.sqrt(D);
  let read = 0;
  let dense = 0;
  let droppedSum = 0;
  let droppedMax = 0;
  let rows = 0;
  for (const L of c.lengths) {
    for (let h = 0; h < H; h++) {
      const qo = (h * N + L - 1) * D;
      const s = new Float64Array(L);
      let m = -Infinity;
      for (let j = 0; j < L; j++) {
        const ko = (h * N + j) * D;
        let x = 0;
        for (let d = 0; d < D; d++) x += c.q[qo + d] * c.k[ko + d];
        s[j] = x * scale;
        if (s[j] > m) m = s[j];
      }
      const pages = Math.ceil(L / ps);
      const always = new Uint8Array(pages);
      const mass = new Float64Array(pages);
      let base = 0;
      for (let j = 0; j < L; j++) {
        const e = Math.exp(s[j] - m);
        if (j < c.sinks || L - 1 - j < c.window) {
          base += e;
          always[Math.floor(j / ps)] = 1;
        } else {
          mass[Math.floor(j / ps)] += e;
        }
      }
      const total = mass.reduce((a, b) => a + b, base);
      const order = Array.from({ length: pages }, (_, J) => J).filter((J) => mass[J] > 0).sort((a, b) => mass[b] - mass[a]);
      const kept = always.slice();
      let z = base;
      for (const J of order) {
        if (z >= tau * total) break;
        z += mass[J];
        kept[J] = 1;
      }
      const dropped = 1 - z / total;
      read += kept.reduce((a, b) => a + b, 0);
      dense += pages;
      droppedSum += dropped;
      droppedMax = Math.max(droppedMax, dropped);
      rows++;
    }
  }
  return { pagesRead: read / dense, droppedMean: droppedSum / rows, droppedMax };
}
