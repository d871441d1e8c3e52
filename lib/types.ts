/** Public option and result types. Semantics: README "Options" and docs/contract.md. */
import type { BlockLayout } from './layout';
import type { Tensor } from './tensor';

/** Memory order of q, k, v and the output: `bhnd` = [batch, heads, seq, headDim]; `bnhd` = [batch, seq, heads, headDim]. */
export type MemoryLayout = 'bhnd' | 'bnhd';

export type BackendName = 'auto' | 'js' | 'cpu' | 'cuda' | 'cuda-emu';

export type Dtype = 'float32' | 'float16' | 'bfloat16';

export interface AttentionShape {
  batch: number;
  /** Query heads (Hq). */
  heads: number;
  /** Key/value heads (Hkv); must divide `heads`. Defaults to `heads` (MHA). */
  kvHeads?: number;
  /** Queries (Nq). */
  seqQ: number;
  /** Keys (Nk). Defaults to `seqQ`. */
  seqK?: number;
  /** Head dimension D, 1..256. */
  headDim: number;
  /** Defaults to `bhnd`. */
  layout?: MemoryLayout;
}

/** Softmax exponential: exact `exp`, or `exp2` by a polynomial of the given degree (2..5, default 3). */
export type SoftmaxOption = 'exact' | 'poly' | { degree?: number; coefficients?: readonly number[] };

/** Key-block selection per query block. `minBlocks`/`maxBlocks` clamp the kept count in every mode. */
export type BlocksOption =
  | { ratio: number; minBlocks?: number; maxBlocks?: number }
  | { topBlocks: number; minBlocks?: number; maxBlocks?: number }
  | { progressive: number; minBlocks?: number; maxBlocks?: number };

export interface AttentionOptions {
  /** Required for Float32Array inputs; optional for Tensors (which carry their dims), checked when given. */
  shape?: AttentionShape;
  /** Causal mask with bottom-right alignment (query i sits at key position i + seqK - seqQ). Default false. */
  causal?: boolean;
  /** Score scale; default 1/sqrt(headDim). */
  scale?: number;
  softmax?: SoftmaxOption;
  /** `w`: the w most recent keys (causal) or |i - j| < w (non-causal); `[left, right]`: p - left <= j <= p + right. */
  window?: number | readonly [number, number];
  /** Keys j < globalTokens are always allowed (sinks). */
  globalTokens?: number;
  /** Query and key block size for selection and layouts: a multiple of 16 in 16..256. Default 64. */
  blockSize?: number;
  /** Queries per query block for selection and layouts, 1..256 (default blockSize; 1 selects per query row, as decode does). */
  queryBlockSize?: number;
  blocks?: BlocksOption;
  /** Block estimate: `mean` (dot of mean q and mean k), `bound` (per-channel upper bound) or `moment` (mean plus a variance term). Default `mean`. */
  estimate?: 'mean' | 'bound' | 'moment';
  /** One block selection per kv group (mean of the group's estimates) instead of one per query head. */
  shareAcrossGroup?: boolean;
  /** Keep the keys scoring at least the topK-th largest allowed score of each row (ties kept). */
  topK?: number;
  /** As topK with k = max(1, ceil(topKRatio * |allowed keys of the row|)). */
  topKRatio?: number;
  /** A precomputed layout, instead of window / globalTokens / blocks. */
  layout?: BlockLayout;
  returnLse?: boolean;
  returnThresholds?: boolean;
  backend?: BackendName;
  /** Compute precision: float32 on js; float16 (default there) or bfloat16 on the device backends. Left out: the chosen backend's own (a 16-bit tensor asks for its type). */
  dtype?: Dtype;
  /** Reject NaN or infinite values in Float32Array inputs (ERR_VALUE). Default true. */
  checkFinite?: boolean;
  /** Keep on the result (`result.saved`) what `attentionBackward` needs: the kept sets (layout, thresholds) and the LSE. Default false. */
  saveForBackward?: boolean;
  /** Threads the cpu backend computes on, 1..1024. Default: the machine's hardware threads. */
  threads?: number;
}

export interface AttentionStats {
  /** Kept (query, key) pairs over causally allowed pairs; 1 for dense. */
  density: number;
  keptPairs: number;
  allowedPairs: number;
  /** (batch, head, query block, key block) tiles computed. */
  blocksVisited: number;
  /** Tiles a dense (causal when causal) computation would visit. */
  blocksDense: number;
  /** Rows with no kept key (output 0, LSE -inf). */
  emptyRows: number;
}

export interface AttentionResult<T = Float32Array | Tensor> {
  /** Same shape and layout as q. */
  output: T;
  /** [batch, heads, seqQ] natural-log sum of exponentials; -inf for empty rows. */
  lse?: Float32Array;
  /** [batch, heads, seqQ] top-k thresholds; -inf where every allowed key is kept. */
  thresholds?: Float32Array;
  stats: AttentionStats;
  /** The block layout used (absent for dense attention). */
  layout?: BlockLayout;
  backend: Exclude<BackendName, 'auto'>;
  /** With `saveForBackward`: what the backward pass reuses. Opaque; pass the result to `attentionBackward`. */
  saved?: SavedForward;
}

/** The forward's kept sets and statistics, frozen, as `attentionBackward` needs them. */
export interface SavedForward {
  /** The resolved options of the forward, with the layout it used in place of its block selection. */
  readonly problem: unknown;
  /** The layout the forward visited (null: dense). */
  readonly layout: BlockLayout | null;
  /** Top-k thresholds per row (null without top-k). */
  readonly thresholds: Float32Array | null;
  readonly lse: Float32Array;
}
