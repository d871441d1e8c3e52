/** What a backend is: the interface the registry chooses among and every backend implements. */
import type { BlockLayout } from '../layout';
import type { Inputs, Problem } from '../problem';
import type { Tensor } from '../tensor';
import type { AttentionStats, BackendName, Dtype } from '../types';

export interface BackendStatus {
  name: Exclude<BackendName, 'auto'>;
  available: boolean;
  /** Why it is unavailable, or what it runs on. */
  reason: string;
  dtypes: readonly Dtype[];
}

/** What a backend returns: the output as host data, or as a device tensor for device inputs. */
export interface BackendResult {
  output: Float32Array | Tensor;
  lse: Float32Array | null;
  thresholds: Float32Array | null;
  stats: AttentionStats;
  /** The layout used; null for dense attention. */
  layout: BlockLayout | null;
}

/** What the forward kept for its backward (docs/backward.md): the kept sets and the LSE. */
export interface SavedKeptSets {
  /** The layout the forward visited (null: dense). */
  layout: BlockLayout | null;
  /** Top-k thresholds per row (null without top-k). */
  thresholds: Float32Array | null;
  lse: Float32Array;
}

/** A backward call's own inputs: dO is host data or a tensor like q (already owned and checked). */
export interface BackwardRequest {
  dO: Float32Array | Tensor;
  /** Gradients bit-identical from run to run (no order-dependent atomics). */
  deterministic: boolean;
}

/** Gradients as host data, or float32 tensors where the inputs live. */
export interface BackendGradients {
  dq: Float32Array | Tensor;
  dk: Float32Array | Tensor;
  dv: Float32Array | Tensor;
}

export interface Backend {
  status(): BackendStatus;
  /** Why this backend cannot run this problem although it is available (null: it can). */
  unsupported?(p: Problem): string | null;
  /** Runs the problem; `p.dtype` is resolved (one of the backend's dtypes). */
  attention(p: Problem, inputs: Inputs): Promise<BackendResult>;
  buildLayout(p: Problem, inputs: Inputs): Promise<BlockLayout>;
  /** The gradients of the forward `saved` came from (absent: this backend has no backward pass). */
  backward?(p: Problem, saved: SavedKeptSets, inputs: Inputs, request: BackwardRequest): Promise<BackendGradients>;
  /** Why this backend cannot run this backward although it has one (null: it can). */
  backwardUnsupported?(p: Problem): string | null;
}
