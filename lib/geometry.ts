/**
 * What every backend derives from a problem's shape alone, in one place: the layout geometry,
 * the causally allowed pairs (the denominator of density), the tiles a dense pass visits, and
 * the stats of a call from the counts a backend measured.
 */
import type { LayoutGeometry } from './layout';
import { causalLimit, Coverage, tileCoverage } from './mask';
import type { Problem } from './problem';
import type { AttentionStats } from './types';

/** The geometry a problem's layout has. */
export function geometryOf(p: Problem): LayoutGeometry {
  const m = p.mask;
  return {
    batch: p.batch, heads: p.heads, seqQ: p.seqQ, seqK: p.seqK, blockSize: p.blockSize, queryBlockSize: p.queryBlockSize, causal: p.causal,
    window: m.windowLeft >= 0 ? [m.windowLeft, m.windowRight] : null, globalTokens: m.globalTokens,
  };
}

/** Per query block, the key blocks holding some causally allowed pair (every block when not causal). */
export function causalBlocks(p: Problem): number[][] {
  const bs = p.blockSize;
  const qbs = p.queryBlockSize;
  const nKB = Math.ceil(p.seqK / bs);
  const perBlock: number[][] = [];
  for (let I = 0; I * qbs < p.seqQ; I++) {
    const i1 = Math.min(p.seqQ, I * qbs + qbs) - 1;
    const list: number[] = [];
    for (let J = 0; J < nKB; J++) {
      if (tileCoverage(p.mask, I * qbs, i1, J * bs, Math.min(p.seqK, J * bs + bs) - 1, true) !== Coverage.None) list.push(J);
    }
    perBlock.push(list);
  }
  return perBlock;
}

/** Causally allowed (query, key) pairs over all batches and heads: the denominator of density. */
export function causalPairs(p: Problem): number {
  let perHead = 0;
  for (let i = 0; i < p.seqQ; i++) perHead += Math.max(0, causalLimit(p.mask, i) + 1);
  return perHead * p.batch * p.heads;
}

/**
 * The stats of a call from what any backend knows: the number of tiles it visited (null when
 * dense: then a dense pass's count) and its kept-pair and empty-row counts.
 */
export function statsOf(p: Problem, tilesVisited: number | null, keptPairs: number, emptyRows: number): AttentionStats {
  const allowedPairs = causalPairs(p);
  // Counted, not built: a dense layout of every (batch, head) only to read its size is wasted work.
  const dense = causalBlocks(p).reduce((n, list) => n + list.length, 0) * p.batch * p.heads;
  return {
    density: allowedPairs > 0 ? keptPairs / allowedPairs : 0,
    keptPairs,
    allowedPairs,
    blocksVisited: tilesVisited ?? dense,
    blocksDense: dense,
    emptyRows,
  };
}
