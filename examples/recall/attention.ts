/**
 * Attention for the example: the cpu backend where the addon has it (forward and backward),
 * else js. A problem the cpu forward declines (ERR_OPTION naming backend) runs its forward on
 * js; its backward still runs on cpu, which walks any layout. Times each pass apart.
 */
import { attention, attentionBackward, info, PsaError } from '../../lib';
import type { AttentionOptions, AttentionResult, BackendName } from '../../lib';

export interface AttentionTimes {
  forwardMs: number;
  backwardMs: number;
}

export class Attention {
  readonly backward: BackendName = info().backends.some((b) => b.name === 'cpu' && b.available) ? 'cpu' : 'js';
  private readonly declined = new Set<string>();
  private times: AttentionTimes = { forwardMs: 0, backwardMs: 0 };

  async forward(q: Float32Array, k: Float32Array, v: Float32Array, options: AttentionOptions): Promise<AttentionResult<Float32Array>> {
    const t0 = performance.now();
    const key = JSON.stringify({ ...options, shape: null });
    let r: AttentionResult<Float32Array> | null = null;
    if (this.backward === 'cpu' && !this.declined.has(key)) {
      r = await attention(q, k, v, { ...options, backend: 'cpu' }).catch((e: unknown) => {
        if (!(e instanceof PsaError && e.code === 'ERR_OPTION' && e.argument === 'backend')) throw e;
        this.declined.add(key);
        return null;
      });
    }
    r ??= await attention(q, k, v, { ...options, backend: 'js' });
    this.times.forwardMs += performance.now() - t0;
    return r;
  }

  async gradients(dO: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, fwd: AttentionResult<Float32Array>) {
    const t0 = performance.now();
    const g = await attentionBackward(dO, q, k, v, fwd, { backend: this.backward });
    this.times.backwardMs += performance.now() - t0;
    return g;
  }

  /** The time spent in each pass since the last take(). */
  take(): AttentionTimes {
    const t = this.times;
    this.times = { forwardMs: 0, backwardMs: 0 };
    return t;
  }
}
