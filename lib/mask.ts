/**
 * The token-level mask of the contract, as intervals. For query row i at key position
 * p = i + (seqK - seqQ), the allowed keys are causal ∩ (window ∪ sinks ∪ selected blocks).
 * Every constraint is an interval in j, so whole tiles are classified in O(rows) and each
 * row of a partial tile is masked with at most two ranges. Shared by the layout builder and
 * the JS reference; independent test oracles re-derive it element by element.
 */

export interface MaskSpec {
  seqQ: number;
  seqK: number;
  causal: boolean;
  /** Window reach before / after the query position; -1 for no window. */
  windowLeft: number;
  windowRight: number;
  globalTokens: number;
}

/** How much of a tile (or row segment) the mask lets through. */
export const enum Coverage {
  None = 0,
  Partial = 1,
  Full = 2,
}

/** Resolve the `window` option: `w` means the w most recent keys when causal, |p - j| < w otherwise. */
export function resolveWindow(window: number | readonly [number, number] | undefined, causal: boolean): [number, number] {
  if (window === undefined) return [-1, -1];
  if (typeof window === 'number') return causal ? [window - 1, 0] : [window - 1, window - 1];
  return [window[0], window[1]];
}

/** Last key a row may see under the causal rule (seqK - 1 when not causal). */
export function causalLimit(spec: MaskSpec, i: number): number {
  return spec.causal ? Math.min(i + spec.seqK - spec.seqQ, spec.seqK - 1) : spec.seqK - 1;
}

function span(lo: number, hi: number): number {
  return hi >= lo ? hi - lo + 1 : 0;
}

/**
 * The window and sink ranges of row i inside keys [j0, j1], clipped to the causal limit.
 * Returns [winLo, winHi, sinkLo, sinkHi]; an empty range has hi < lo.
 */
export function windowSinkRanges(spec: MaskSpec, i: number, j0: number, j1: number): [number, number, number, number] {
  const cap = Math.min(j1, causalLimit(spec, i));
  const p = i + spec.seqK - spec.seqQ;
  let wLo = 0;
  let wHi = -1;
  if (spec.windowLeft >= 0) {
    wLo = Math.max(j0, p - spec.windowLeft);
    wHi = Math.min(cap, p + spec.windowRight);
  }
  const sHi = Math.min(cap, spec.globalTokens - 1);
  return [wLo, wHi, j0, sHi];
}

/** Number of keys in [j0, j1] that row i sees through the window or the sinks. */
export function windowSinkCount(spec: MaskSpec, i: number, j0: number, j1: number): number {
  const [wLo, wHi, sLo, sHi] = windowSinkRanges(spec, i, j0, j1);
  const overlap = span(Math.max(wLo, sLo), Math.min(wHi, sHi));
  return span(wLo, wHi) + span(sLo, sHi) - overlap;
}

/** Number of keys in [j0, j1] that row i may see under the causal rule alone. */
export function causalCount(spec: MaskSpec, i: number, j0: number, j1: number): number {
  return span(j0, Math.min(j1, causalLimit(spec, i)));
}

/** Coverage of the tile rows [i0, i1] x keys [j0, j1], for a selected block or a window/sink-only one. */
export function tileCoverage(spec: MaskSpec, i0: number, i1: number, j0: number, j1: number, selected: boolean): Coverage {
  const width = j1 - j0 + 1;
  let any = false;
  let all = true;
  for (let i = i0; i <= i1; i++) {
    const n = selected ? causalCount(spec, i, j0, j1) : windowSinkCount(spec, i, j0, j1);
    if (n > 0) any = true;
    if (n < width) all = false;
  }
  return all ? Coverage.Full : any ? Coverage.Partial : Coverage.None;
}

/** True when some row of [i0, i1] has a causally allowed key in [j0, j1] outside its window and the sinks. */
export function isCandidate(spec: MaskSpec, i0: number, i1: number, j0: number, j1: number): boolean {
  for (let i = i0; i <= i1; i++) {
    if (causalCount(spec, i, j0, j1) > windowSinkCount(spec, i, j0, j1)) return true;
  }
  return false;
}
