/** Comparisons against the oracle, with the accuracy rules of docs/contract.md#accuracy. */
import { LayoutLike, OracleSelection, OracleResult, selectionOf } from './oracle';

/** Relative Frobenius error ||a - b|| / ||b|| (absolute when ||b|| = 0). */
export function relFrob(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
}

export function hasNaN(a: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (Number.isNaN(a[i])) return true;
  return false;
}

/** Output within `tol` relative Frobenius error of the oracle's, and no NaN. */
export function expectOutput(got: Float32Array, want: OracleResult, tol = 1e-5): void {
  expect(hasNaN(got)).toBe(false);
  const err = relFrob(got, want.output);
  if (!(err <= tol)) throw new Error(`relative Frobenius error ${err.toExponential(3)} > ${tol}`);
}

/** LSE: -inf exactly where the oracle's is, else within abs 2e-5 + 2e-6 |lse|. */
export function expectLse(got: Float32Array | undefined, want: OracleResult, absTol = 2e-5): void {
  expect(got).toBeDefined();
  expect(got!.length).toBe(want.lse.length);
  for (let i = 0; i < got!.length; i++) {
    const w = want.lse[i];
    const g = got![i];
    if (w === -Infinity) {
      if (g !== -Infinity) throw new Error(`lse[${i}]: want -inf, got ${g}`);
    } else if (!(Math.abs(g - w) <= absTol + 2e-6 * Math.abs(w))) {
      throw new Error(`lse[${i}]: want ${w}, got ${g}`);
    }
  }
}

/** Thresholds: -inf exactly where the oracle's is, else equal within float32 rounding of the scores. */
export function expectThresholds(got: Float32Array | undefined, want: OracleResult, relTol = 1e-5): void {
  expect(got).toBeDefined();
  expect(got!.length).toBe(want.thresholds.length);
  for (let i = 0; i < got!.length; i++) {
    const w = want.thresholds[i];
    const g = got![i];
    if (w === -Infinity) {
      if (g !== -Infinity) throw new Error(`thresholds[${i}]: want -inf, got ${g}`);
    } else if (!(Math.abs(g - w) <= relTol * Math.max(1, Math.abs(w)))) {
      throw new Error(`thresholds[${i}]: want ${w}, got ${g}`);
    }
  }
}

export interface StatsLike {
  density: number;
  keptPairs: number;
  allowedPairs: number;
  blocksVisited: number;
  blocksDense: number;
  emptyRows: number;
}

export function expectStats(got: StatsLike, want: OracleResult, opts: { blocks?: boolean } = {}): void {
  const w = want.stats;
  expect({ keptPairs: got.keptPairs, allowedPairs: got.allowedPairs, emptyRows: got.emptyRows }).toEqual({
    keptPairs: w.keptPairs, allowedPairs: w.allowedPairs, emptyRows: w.emptyRows,
  });
  expect(got.density).toBeCloseTo(w.density, 12);
  if (opts.blocks !== false) {
    expect(got.blocksDense).toBe(w.blocksDense);
    expect(got.blocksVisited).toBe(w.blocksVisited);
  }
}

/** Minimal view of a library BlockLayout for comparison. */
export interface LayoutView {
  batch: number;
  heads: number;
  numQueryBlocks: number;
  numKeyBlocks: number;
  offsets: Int32Array;
  indices: Int32Array;
  flags: Uint8Array;
  blocksFor(b: number, h: number, I: number): { blocks: Int32Array; full: boolean[]; selected: boolean[] };
}

/** Every layout row equals the oracle's entries: blocks (ascending), SELECTED and FULL flags. */
export function expectLayout(layout: LayoutView | undefined, want: OracleResult): void {
  expect(layout).toBeDefined();
  const L = layout!;
  expect(L.numQueryBlocks).toBe(want.numQueryBlocks);
  expect(L.numKeyBlocks).toBe(want.numKeyBlocks);
  expect(L.offsets.length).toBe(want.entries!.length + 1);
  let row = 0;
  const diffs: string[] = [];
  for (let b = 0; b < L.batch; b++) {
    for (let h = 0; h < L.heads; h++) {
      for (let I = 0; I < L.numQueryBlocks; I++, row++) {
        const got = L.blocksFor(b, h, I);
        const w = want.entries![row];
        const g = Array.from(got.blocks, (J, e) => `${J}${got.selected[e] ? 'S' : ''}${got.full[e] ? 'F' : ''}`).join(',');
        const x = w.map((en) => `${en.block}${en.selected ? 'S' : ''}${en.full ? 'F' : ''}`).join(',');
        if (g !== x && diffs.length < 5) diffs.push(`(b=${b}, h=${h}, I=${I}): got [${g}] want [${x}]`);
      }
    }
  }
  if (diffs.length) throw new Error(`layout differs from the oracle (S = selected, F = full):\n${diffs.join('\n')}`);
}

/**
 * The layout's selected blocks against the oracle's. With `tol` 0 they are equal; otherwise a
 * row may differ only in blocks whose estimates lie within `tol` (relative to the row's largest
 * estimate magnitude) of the oracle's cut. Returns how many rows differed (excused).
 */
export function expectSelection(layout: LayoutLike, own: OracleSelection, tol: number): number {
  const got = selectionOf(layout);
  if (tol === 0) {
    expect(got).toEqual(own.selection);
    return 0;
  }
  expect(got.length).toBe(own.selection.length);
  let differing = 0;
  for (let r = 0; r < got.length; r++) {
    const a = new Set(got[r]);
    const b = new Set(own.selection[r]);
    const diff = [...a].filter((J) => !b.has(J)).concat([...b].filter((J) => !a.has(J)));
    if (!diff.length) continue;
    differing++;
    const e = own.estimates[r];
    const kept = own.selection[r].map((J) => e[J]);
    const cut = kept.length ? Math.min(...kept) : Math.max(...Array.from(e).filter((x) => !Number.isNaN(x)));
    let mag = 1e-30;
    for (const x of e) if (!Number.isNaN(x)) mag = Math.max(mag, Math.abs(x));
    for (const J of diff) {
      if (!(Math.abs(e[J] - cut) <= tol * mag)) {
        throw new Error(`selection row ${r}: block ${J} (estimate ${e[J]}) differs from the oracle's choice [${own.selection[r]}] vs [${got[r]}], cut ${cut}`);
      }
    }
  }
  return differing;
}
