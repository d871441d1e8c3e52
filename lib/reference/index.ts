/** The JS reference backend: the whole contract on Float32Arrays, the oracle other backends are tested against. */
import { BlockLayout } from '../layout';
import { causalBlocks, geometryOf, statsOf } from '../geometry';
import type { Problem } from '../problem';
import type { AttentionStats } from '../types';
import { forward } from './forward';
import { selectBlocks } from './select';

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

function denseLayout(p: Problem): BlockLayout {
  const perBlock = causalBlocks(p);
  return BlockLayout.fromSelection(geometryOf(p), (_b, _h, I) => perBlock[I]);
}

export function runReference(p: Problem, q: Float32Array, k: Float32Array, v: Float32Array): ReferenceResult {
  const layout = layoutFor(p, q, k);
  const f = forward(p, layout, q, k, v);
  const stats = statsOf(p, p.sparse ? layout.size : null, f.keptPairs, f.emptyRows);
  return { output: f.output, lse: f.lse, thresholds: f.thresholds, stats, layout: p.sparse ? layout : null };
}
