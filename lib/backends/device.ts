/**
 * The cuda and cuda-emu backends: the whole call on the device through the addon
 * (binding/attention.cc → cuda/attention/run.cu). The same code drives a real device and the
 * emulated build, so the jest suites that run on `cuda-emu` exercise the launcher, the
 * handles and the kernels end to end.
 *
 * Float32Array inputs are uploaded in the compute type (rounded on the device), run, and the
 * results downloaded; every temporary is disposed on every path. Device tensors stay where
 * they are, and the output comes back as a float32 device tensor at the same location.
 */
import { BackendUnavailableError, OptionError } from '../errors';
import { geometryOf, statsOf } from '../geometry';
import { BlockLayout } from '../layout';
import { polyRelativeError } from '../softmax';
import { AddonState, loadAddon, loadEmuAddon, NativeAttentionRequest, NativeDeviceTensor, NativeLayout, NativeRuntimeInfo, resetAddon, unusableReason } from '../native';
import type { Inputs, Problem } from '../problem';
import { DeviceStorage, Tensor } from '../tensor';
import type { Dtype } from '../types';
import type { Backend, BackendResult, BackendStatus } from './backend';
import { deviceBackward } from './device-backward';

export type DeviceFlavor = 'cuda' | 'cuda-emu';

/** The device kernels tile queries and keys by 64: layouts of 64, 128, 192 or 256. */
const KERNEL_TILE = 64;
/** Key blocks per row the selection kernel sorts in shared memory (cuda/attention/select.h). */
export const MAX_SELECT_KEY_BLOCKS = 4096;

/** The least accurate polynomial exp2 the device runs (degree 3 is within 8.8e-5). */
export const DEVICE_POLY_ERROR = 1e-4;

/** Grid y (heads) and z (batch) limit of a CUDA launch. */
const MAX_GRID_YZ = 65535;

const CHOICE = { ratio: 1, topBlocks: 2, progressive: 3 } as const;

/** Why this backend cannot run the problem (null: it can). Checked before any work. */
export function deviceUnsupported(p: Problem): string | null {
  if (p.queryBlockSize !== p.blockSize) return `queryBlockSize ${p.queryBlockSize} differs from blockSize ${p.blockSize}: the device kernels select per query block of blockSize rows`;
  if (p.softmax.kind === 'poly' && polyRelativeError(p.softmax.coefficients) > DEVICE_POLY_ERROR) {
    return `the polynomial is within ${polyRelativeError(p.softmax.coefficients).toExponential(1)} of 2^f; the device kernels, which rescale by exact powers of two as a row's maximum moves, keep the accuracy contract only for polynomials within ${DEVICE_POLY_ERROR} (degree 3 and up)`;
  }
  if (p.blockSize % KERNEL_TILE !== 0) return `blockSize ${p.blockSize} is not a multiple of ${KERNEL_TILE} (the device kernels' tile)`;
  if (p.heads > MAX_GRID_YZ || p.batch > MAX_GRID_YZ) return `heads and batch must be at most ${MAX_GRID_YZ} (the launch grid's y and z limits)`;
  const nKB = Math.ceil(p.seqK / p.blockSize);
  if (p.selection && nKB > MAX_SELECT_KEY_BLOCKS) {
    return `block selection on the device handles at most ${MAX_SELECT_KEY_BLOCKS} key blocks per row (seqK ${p.seqK} at blockSize ${p.blockSize}); use a larger blockSize`;
  }
  // The device layout builder indexes rows x key blocks with 32-bit integers.
  if (p.sparse && !p.layout && p.batch * p.heads * Math.ceil(p.seqQ / p.blockSize) * nKB > 0x7fffffff) {
    return 'batch x heads x query blocks x key blocks exceeds 2^31 for block selection on the device; split the call or use a larger blockSize';
  }
  return null;
}

export function requestFor(p: Problem, dtype: Dtype): NativeAttentionRequest {
  const sel = p.selection;
  const layout: NativeLayout | undefined = p.layout ? { offsets: p.layout.offsets, indices: p.layout.indices, flags: p.layout.flags } : undefined;
  return {
    compute: dtype === 'bfloat16' ? 'bfloat16' : 'float16',
    batch: p.batch, heads: p.heads, kvHeads: p.kvHeads, seqQ: p.seqQ, seqK: p.seqK, headDim: p.headDim,
    bnhd: p.memoryLayout === 'bnhd',
    scale: p.scale,
    causal: p.causal,
    windowLeft: p.mask.windowLeft, windowRight: p.mask.windowRight, globalTokens: p.mask.globalTokens,
    blockSize: p.blockSize,
    sparse: p.sparse,
    layout,
    choice: sel ? CHOICE[sel.mode] : 0,
    choiceValue: sel ? sel.value : 0,
    minBlocks: sel ? sel.minBlocks : 0,
    // The addon takes 32-bit integers; "all" is any count at or above the number of key blocks.
    maxBlocks: sel ? Math.min(sel.maxBlocks, 0x7fffffff) : 0x7fffffff,
    boundEstimate: sel?.estimate === 'bound',
    momentEstimate: sel?.estimate === 'moment',
    shareAcrossGroup: sel?.shareAcrossGroup ?? false,
    topK: p.topK?.kind === 'count' ? p.topK.k : 0,
    topKRatio: p.topK?.kind === 'ratio' ? p.topK.ratio : 0,
    polyCoefficients: p.softmax.kind === 'poly' ? Float32Array.from(p.softmax.coefficients) : undefined,
    returnLse: p.returnLse,
    returnThresholds: p.returnThresholds,
  };
}

/** A cuda or cuda-emu backend over the addon `load()` returns. */
function deviceBackend(flavor: DeviceFlavor, load: () => AddonState, unusable: () => string | null): Backend {
  const addonOrThrow = () => {
    const why = unusable();
    const a = load();
    if (why !== null || !a.loaded) throw new BackendUnavailableError(flavor, why ?? (a as { reason: string }).reason);
    return a.addon;
  };

  /**
   * q, k, v as device handles at this backend's location: device tensors as they are, host
   * data uploaded (all uploads started at once; the caller disposes `owned`). On a failure,
   * every upload that succeeded is disposed before the error propagates.
   */
  async function deviceInputs(inputs: Inputs, dtype: Dtype, withV: boolean): Promise<{ handles: NativeDeviceTensor[]; owned: NativeDeviceTensor[] }> {
    const addon = addonOrThrow();
    const sources = withV ? [inputs.q, inputs.k, inputs.v] : [inputs.q, inputs.k];
    for (const src of sources) {
      if (src instanceof Tensor && src.storage instanceof DeviceStorage && src.location !== flavor) {
        throw new OptionError(`a tensor on '${src.location}' cannot be used by the '${flavor}' backend`, 'backend');
      }
    }
    const settled = await Promise.allSettled(sources.map(async (src) => {
      if (src instanceof Tensor && src.storage instanceof DeviceStorage) return { handle: src.storage.native, owned: false };
      return { handle: await addon.upload(src instanceof Tensor ? src.data : src, dtype), owned: true };
    }));
    const owned = settled.flatMap((r) => (r.status === 'fulfilled' && r.value.owned ? [r.value.handle] : []));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      for (const t of owned) t.dispose();
      throw failed.reason;
    }
    return { handles: settled.map((r) => (r as PromiseFulfilledResult<{ handle: NativeDeviceTensor }>).value.handle), owned };
  }

  const status = (): BackendStatus => {
    const why = unusable();
    const a = load();
    if (why !== null || !a.loaded) return { name: flavor, available: false, reason: why ?? (a as { reason: string }).reason, dtypes: [] };
    const where = flavor === 'cuda' ? a.runtime.devices.map((d) => `${d.name} (${d.computeCapability})`).join(', ') : `the CPU execution model (${a.path})`;
    return { name: flavor, available: true, reason: `Tensor Core kernels on ${where}`, dtypes: ['float16', 'bfloat16'] };
  };

  return {
    status,
    unsupported: deviceUnsupported,
    ...deviceBackward({ flavor, addonOrThrow, unsupported: deviceUnsupported, requestFor, deviceInputs }),

    async attention(p: Problem, inputs: Inputs): Promise<BackendResult> {
      const dtype = p.dtype ?? 'float16';
      const addon = addonOrThrow();
      const { handles, owned } = await deviceInputs(inputs, dtype, true);
      let r;
      try {
        r = await addon.attention(handles[0], handles[1], handles[2], requestFor(p, dtype));
      } finally {
        for (const t of owned) t.dispose();
      }
      const made = [r.output, r.lse, r.thresholds].filter((t): t is NativeDeviceTensor => t !== undefined);
      try {
        const lse = r.lse ? await r.lse.download() : null;
        const thresholds = r.thresholds ? await r.thresholds.download() : null;
        r.lse?.dispose();
        r.thresholds?.dispose();
        const layout = p.layout ?? (r.layout ? new BlockLayout(geometryOf(p), r.layout.offsets, r.layout.indices, r.layout.flags) : null);
        const stats = statsOf(p, p.sparse && layout ? layout.size : null, r.keptPairs, r.emptyRows);
        // Device inputs keep their output on the device; host inputs get host data.
        const onDevice = inputs.kind === 'tensor' && inputs.q.storage instanceof DeviceStorage;
        const output = onDevice ? new Tensor(new DeviceStorage(flavor, r.output), inputs.q.dims) : await r.output.download();
        if (!onDevice) r.output.dispose();
        return { output, lse, thresholds, stats, layout: p.sparse ? layout : null };
      } catch (e) {
        for (const t of made) t.dispose();
        throw e;
      }
    },

    async buildLayout(p: Problem, inputs: Inputs): Promise<BlockLayout> {
      if (p.layout) return p.layout;
      const dtype = p.dtype ?? 'float16';
      const addon = addonOrThrow();
      const { handles, owned } = await deviceInputs(inputs, dtype, false);
      try {
        const l = await addon.buildLayout(handles[0], handles[1], requestFor(p, dtype));
        return new BlockLayout(geometryOf(p), l.offsets, l.indices, l.flags);
      } finally {
        for (const t of owned) t.dispose();
      }
    },
  };
}

/** Why the CUDA backend cannot run here, or null when a device could run its kernels. */
export function cudaUnusableReason(): string | null {
  const addon = loadAddon();
  if (!addon.loaded) return addon.reason;
  const latched = unusableReason(addon);
  if (latched) return latched;
  const rt = addon.runtime;
  if (rt.error) return `${rt.error.message} (${rt.error.name}, ${rt.error.code})`;
  if (rt.flavor !== 'cuda') return `the loaded addon is the ${rt.flavor} build, not a device build`;
  const usable = rt.devices.filter((d) => Number(d.computeCapability.split('.')[0]) >= 8);
  if (!usable.length) return `no device of compute capability 8.0 or newer (found ${rt.devices.map((d) => `${d.name} ${d.computeCapability}`).join(', ')})`;
  return null;
}

/** Why the emulated build cannot run here, or null. */
function emuUnusableReason(): string | null {
  const emu = loadEmuAddon();
  return emu.loaded ? unusableReason(emu) : emu.reason;
}

export const cudaBackend = deviceBackend('cuda', loadAddon, cudaUnusableReason);
export const cudaEmuBackend = deviceBackend('cuda-emu', loadEmuAddon, emuUnusableReason);

/** The native addon as `psa info` reports it: where it loaded from and what the runtime says now, or why there is none. */
export type AddonReport = { loaded: true; path: string; runtime: NativeRuntimeInfo } | { loaded: false; reason: string };

export function addonReport(): AddonReport {
  const addon = loadAddon();
  // Probe again rather than reuse the load-time answer: free memory and devices can change.
  return addon.loaded ? { loaded: true, path: addon.path, runtime: addon.addon.info() } : { loaded: false, reason: addon.reason };
}

/** Forget the loaded addons (after `psa build`), so the next call loads the new build. */
export const reloadAddons = resetAddon;
