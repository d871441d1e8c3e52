/**
 * How often the kept set of a query holds the pair it asks for: the recall of the selection
 * itself, apart from what the model does with it. Read from the layout the forward visited.
 */
import { BLOCK_SELECTED } from '../../lib';
import type { BlockLayout } from '../../lib';
import type { Batch } from './task';

/** The share of the batch's queries whose asked-for key the layout allows (1 without a layout: dense). */
export function selectionRecall(layout: BlockLayout | undefined, batch: Batch, queries: number): number {
  if (!layout) return 1;
  let kept = 0;
  for (let b = 0; b < batch.sequences; b++) {
    for (let t = 0; t < queries; t++) {
      const key = batch.answerAt[b * queries + t];
      const position = t + layout.seqK - layout.seqQ;
      const row = b * layout.numQueryBlocks + Math.floor(t / layout.queryBlockSize); // one head
      const J = Math.floor(key / layout.blockSize);
      for (let e = layout.offsets[row]; e < layout.offsets[row + 1]; e++) {
        if (layout.indices[e] !== J) continue;
        const inWindow = layout.window !== null && key >= position - layout.window[0] && key <= position + layout.window[1];
        if (layout.flags[e] & BLOCK_SELECTED || inWindow || key < layout.globalTokens) kept++;
        break;
      }
    }
  }
  return kept / (batch.sequences * queries);
}
