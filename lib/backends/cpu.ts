/**
 * The cpu backend: the whole contract in C++ (cpu/) on float32, through the addon
 * (binding/cpu_attention.cc), off the event loop on the addon's thread pool. The addon copies
 * q, k and v when the call is made, so it computes from the data that was checked.
 */
import { BackendUnavailableError } from '../errors';
import { geometryOf, statsOf } from '../geometry';
import { BlockLayout } from '../layout';
import { AddonState, loadAddon, NativeAttentionRequest, NativeLayout } from '../native';
import type { Inputs, Problem } from '../problem';
import { Tensor } from '../tensor';
import type { Backend, BackendGradients, BackendResult, BackendStatus, BackwardRequest, SavedKeptSets } from './backend';
import { requestFor } from './device';

/**
 * The request of binding/cpu_attention.cc: the device request without `compute`, with
 * `threads`, the query block size and the 'moment' estimate.
 */
export type CpuRequest = Omit<NativeAttentionRequest, 'compute'> & { threads: number; queryBlockSize: number; momentEstimate: boolean };

export interface CpuAddon {
  cpuInfo(): { simd: string; threads: number };
  cpuAttention(q: Float32Array, k: Float32Array, v: Float32Array, request: CpuRequest): Promise<{
    output: Float32Array;
    lse?: Float32Array;
    thresholds?: Float32Array;
    layout?: NativeLayout;
    keptPairs: number;
    emptyRows: number;
  }>;
  cpuBuildLayout(q: Float32Array, k: Float32Array, request: CpuRequest): Promise<NativeLayout>;
  cpuBackward(q: Float32Array, k: Float32Array, v: Float32Array, dO: Float32Array, request: CpuRequest & { queryBlockSize: number },
    saved: { layout?: NativeLayout; thresholds?: Float32Array }): Promise<{ dq: Float32Array; dk: Float32Array; dv: Float32Array }>;
}

/** A layout from the addon's arrays, copied into this realm's typed arrays (they are small). */
function layoutOf(p: Problem, l: NativeLayout): BlockLayout {
  return new BlockLayout(geometryOf(p), Int32Array.from(l.offsets), Int32Array.from(l.indices), Uint8Array.from(l.flags));
}

/** The addon's cpu entry points, or why there are none. */
function cpuAddon(load: () => AddonState): { addon: CpuAddon } | { reason: string } {
  const a = load();
  if (!a.loaded) return { reason: a.reason };
  const addon = a.addon as unknown as Partial<CpuAddon>;
  if (typeof addon.cpuAttention !== 'function') return { reason: `the addon at ${a.path} was built without the CPU kernels; rebuild it with \`npx psa build\`` };
  return { addon: addon as CpuAddon };
}

function cpuRequest(p: Problem, threads: number): CpuRequest {
  const { compute: _unused, ...request } = requestFor(p, 'float32');
  return { ...request, threads, queryBlockSize: p.queryBlockSize, momentEstimate: p.selection?.estimate === 'moment' };
}

/**
 * Host data of the inputs: synchronously where it already is on the host, so that the addon
 * copies it within the `attention` call that checked it; device tensors are downloaded.
 */
function hostData(inputs: Inputs): Float32Array[] | Promise<Float32Array[]> {
  if (inputs.kind === 'host') return [inputs.q, inputs.k, inputs.v];
  const tensors = [inputs.q, inputs.k, inputs.v];
  if (tensors.every((t) => t.location === 'cpu')) return tensors.map((t) => t.data);
  return Promise.all(tensors.map((t) => t.download()));
}

export function cpuBackend(load: () => AddonState = loadAddon): Backend {
  const addonOrThrow = (): CpuAddon => {
    const c = cpuAddon(load);
    if ('reason' in c) throw new BackendUnavailableError('cpu', c.reason);
    return c.addon;
  };
  const threadsFor = (p: Problem, addon: CpuAddon) => p.threads ?? addon.cpuInfo().threads;

  return {
    status(): BackendStatus {
      const c = cpuAddon(load);
      if ('reason' in c) return { name: 'cpu', available: false, reason: c.reason, dtypes: [] };
      const { simd, threads } = c.addon.cpuInfo();
      return { name: 'cpu', available: true, reason: `C++ kernels (${simd}), float32, ${threads} threads by default`, dtypes: ['float32'] };
    },

    async attention(p: Problem, inputs: Inputs): Promise<BackendResult> {
      const addon = addonOrThrow();
      const data = hostData(inputs);
      const [q, k, v] = Array.isArray(data) ? data : await data;
      const r = await addon.cpuAttention(q, k, v, cpuRequest(p, threadsFor(p, addon)));
      const layout = p.layout ?? (r.layout ? layoutOf(p, r.layout) : null);
      const stats = statsOf(p, p.sparse && layout ? layout.size : null, r.keptPairs, r.emptyRows);
      return { output: r.output, lse: r.lse ?? null, thresholds: r.thresholds ?? null, stats, layout: p.sparse ? layout : null };
    },

    // The forward's layout (null: dense) and thresholds reused; cpu/backward.h computes the rest.
    async backward(p: Problem, saved: SavedKeptSets, inputs: Inputs, { dO }: BackwardRequest): Promise<BackendGradients> {
      const addon = addonOrThrow();
      const data = hostData(inputs);
      const [q, k, v] = Array.isArray(data) ? data : await data;
      const grad = !(dO instanceof Tensor) ? dO : dO.location === 'cpu' ? dO.data : await dO.download();
      const l = saved.layout;
      const request = { ...cpuRequest({ ...p, layout: null, selection: null, sparse: l !== null }, threadsFor(p, addon)), queryBlockSize: l ? l.queryBlockSize : p.blockSize };
      return addon.cpuBackward(q, k, v, grad, request, {
        layout: l ? { offsets: l.offsets, indices: l.indices, flags: l.flags } : undefined,
        thresholds: saved.thresholds ?? undefined,
      });
    },

    async buildLayout(p: Problem, inputs: Inputs): Promise<BlockLayout> {
      if (p.layout) return p.layout;
      const addon = addonOrThrow();
      const data = hostData(inputs);
      const [q, k] = Array.isArray(data) ? data : await data;
      const l = await addon.cpuBuildLayout(q, k, cpuRequest(p, threadsFor(p, addon)));
      return layoutOf(p, l);
    },
  };
}
