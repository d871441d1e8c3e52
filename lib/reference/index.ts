/** The JS reference backend: the whole contract on Float32Arrays, the oracle other backends are tested against. */
import { BlockLayout } from '../layout';
import { causalLimit, tileCoverage, Coverage } from '../mask';
import type { Problem } from '../problem';
import type { AttentionStats } from '../types';
import { forward } from './forward';
import { geometryOf, selectBlocks } from './select';

export interface ReferenceResult {
  output: Float32Array;
  lse: Float32Array | null;
  thresholds: Float32Array | null;
  stats: AttentionStats;
  /** The layout used; null for dense attention. */
  layout: BlockLayout | null;
}

/** The layout a problem runs on: the one passed in, the selection's, window/sinks alone, or every causal block (dense). */
export function layoutFor(p: Problem, q: Float32Array, k: Float32Array): BlockLayout {
  if (p.layout) return p.layout;
  if (p.selection) return selectBlocks(p, q, k);
  if (p.sparse) return BlockLayout.fromSelection(geometryOf(p), () => []);
  return denseLayout(p);
}

/** Per query block, the key blocks holding some causally allowed pair (every block when not causal). */
function causalBlocks(p: Problem): number[][] {
  const bs = p.blockSize;
  const nKB = Math.ceil(p.seqK / bs);
  const perBlock: number[][] = [];
  for (let I = 0; I * bs < p.seqQ; I++) {
    const i1 = Math.min(p.seqQ, I * bs + bs) - 1;
    const list: number[] = [];
    for (let J = 0; J < nKB; J++) {
      if (tileCoverage(p.mask, I * bs, i1, J * bs, Math.min(p.seqK, J * bs + bs) - 1, true) !== Coverage.None) list.push(J);
    }
    perBlock.push(list);
  }
  return perBlock;
}

function denseLayout(p: Problem): BlockLayout {
  const perBlock = causalBlocks(p);
  return BlockLayout.fromSelection(geometryOf(p), (_b, _h, I) => perBlock[I]);
}

/** Causally allowed (query, key) pairs over all batches and heads: the denominator of density. */
export function causalPairs(p: Problem): number {
  let perHead = 0;
  for (let i = 0; i < p.seqQ; i++) perHead += Math.max(0, causalLimit(p.mask, i) + 1);
  return perHead * p.batch * p.heads;
}

/**
 * The stats of a call from what any backend knows: the layout it visited (null when dense)
 * and its kept-pair and empty-row counts.
 */
export function statsOf(p: Problem, layout: BlockLayout | null, keptPairs: number, emptyRows: number): AttentionStats {
  const allowedPairs = causalPairs(p);
  // Counted, not built: a dense layout of every (batch, head) only to read its size is wasted work.
  const dense = causalBlocks(p).reduce((n, list) => n + list.length, 0) * p.batch * p.heads;
  return {
    density: allowedPairs > 0 ? keptPairs / allowedPairs : 0,
    keptPairs,
    allowedPairs,
    blocksVisited: layout ? layout.size : dense,
    blocksDense: dense,
    emptyRows,
  };
}

export function runReference(p: Problem, q: Float32Array, k: Float32Array, v: Float32Array): ReferenceResult {
  const layout = layoutFor(p, q, k);
  const f = forward(p, layout, q, k, v);
  const stats = statsOf(p, p.sparse ? layout : null, f.keptPairs, f.emptyRows);
  return { output: f.output, lse: f.lse, thresholds: f.thresholds, stats, layout: p.sparse ? layout : null };
}
