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

export interface Backend {
  status(): BackendStatus;
  /** Why this backend cannot run this problem although it is available (null: it can). */
  unsupported?(p: Problem): string | null;
  /** Runs the problem; `p.dtype` is resolved (one of the backend's dtypes). */
  attention(p: Problem, inputs: Inputs): Promise<BackendResult>;
  buildLayout(p: Problem, inputs: Inputs): Promise<BlockLayout>;
}
