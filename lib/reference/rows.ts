/** Where row n of head h in batch b starts, and the stride between rows, in either memory layout. */
import type { MemoryLayout } from '../types';

export interface RowAccess {
  base: number;
  stride: number;
}

export function rowAccess(layout: MemoryLayout, b: number, h: number, heads: number, seq: number, headDim: number): RowAccess {
  return layout === 'bhnd'
    ? { base: (b * heads + h) * seq * headDim, stride: headDim }
    : { base: (b * seq * heads + h) * headDim, stride: heads * headDim };
}
