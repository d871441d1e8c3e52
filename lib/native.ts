/**
 * The native addon, loaded once per thread: `build/Release` (built from source) or
 * `prebuilds/<platform>-<arch>/` through node-gyp-build, or the file named by
 * PSA_ADDON_PATH. Loading never throws: a missing or broken addon leaves the JS backend and a
 * reason that `psa info` shows, with how to build one.
 */
import {
  BackendUnavailableError, CudaError, DisposedError, DtypeError, OptionError, OutOfMemoryError, PsaError, ShapeError, ValueError,
} from './errors';
import { packageRoot } from './package-root';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A device buffer owned by the addon. Work in flight holds its own share of the memory:
 * `dispose()` releases the caller's, and the memory is freed when the last holder ends.
 */
export interface NativeDeviceTensor {
  readonly disposed: boolean;
  readonly type: 'float32' | 'float16' | 'bfloat16';
  readonly count: number;
  readonly device: number;
  download(): Promise<Float32Array>;
  dispose(): void;
  /** A second handle on the same memory, disposed on its own (a call holds one for its duration). */
  share(): NativeDeviceTensor;
}

export interface NativeDeviceInfo {
  index: number;
  name: string;
  computeCapability: string;
  multiprocessors: number;
  totalMemory: number;
  freeMemory: number;
}

export interface NativeRuntimeInfo {
  /** CUDA kernels compiled into this addon. */
  compiled: boolean;
  flavor: 'cuda' | 'cuda-emu' | 'none';
  targets: string;
  runtimeVersion: number;
  driverVersion: number;
  devices: NativeDeviceInfo[];
  error?: NativeStatus;
  /** Set once a sticky runtime error (an illegal address, a launch failure) lost the CUDA context: the device is unusable until the process restarts. */
  unusable?: NativeStatus;
}

/** A runtime failure as the addon reports it. */
export interface NativeStatus {
  code: number;
  name: string;
  message: string;
}

/**
 * The addon's entry points. Every one that takes host arrays (uploads, the layout and
 * coefficients of a request) copies them before it returns, so the caller may change,
 * transfer or drop them at once.
 */
export interface NativeAddon {
  init(errorFactory: (kind: string, name: string, message: string) => Error): void;
  info(): NativeRuntimeInfo;
  /** Null, or the sticky failure that made the device unusable for the rest of the process. */
  unusable(): NativeStatus | null;
  upload(data: Float32Array, type: string, device?: number): Promise<NativeDeviceTensor>;
  uploadRaw16(data: Uint16Array, type: string, device?: number): Promise<NativeDeviceTensor>;
  /** The first index whose value x fails |x| < bound (NaN and infinities always fail; bound defaults to Infinity), or -1. */
  firstNonFinite(tensor: NativeDeviceTensor, bound?: number): Promise<number>;
  /** firstNonFinite of each of 1 to 64 tensors, checked at once: one wait on the device for all. */
  firstNonFiniteEach(tensors: NativeDeviceTensor[], bound?: number): Promise<number[]>;
  /** Emulated build only: a launch that faults like a device trap (cudaErrorLaunchFailure), for tests of the sticky-error latch. */
  faultForTests?(): Promise<void>;
  attention(q: NativeDeviceTensor, k: NativeDeviceTensor, v: NativeDeviceTensor, request: NativeAttentionRequest): Promise<NativeAttentionResult>;
  buildLayout(q: NativeDeviceTensor, k: NativeDeviceTensor, request: NativeAttentionRequest): Promise<NativeLayout>;
}

/** A block layout's CSR arrays as the addon passes them (lib/layout.ts). */
export interface NativeLayout {
  offsets: Int32Array;
  indices: Int32Array;
  flags: Uint8Array;
}

/** One attention call, every option resolved (binding/attention.cc reads exactly these keys). */
export interface NativeAttentionRequest {
  compute: 'float16' | 'bfloat16';
  batch: number; heads: number; kvHeads: number; seqQ: number; seqK: number; headDim: number;
  bnhd: boolean;
  scale: number;
  causal: boolean;
  windowLeft: number; windowRight: number; globalTokens: number;
  blockSize: number;
  sparse: boolean;
  /** A caller's layout; absent: selection (choice) on top of window and sinks. */
  layout?: NativeLayout;
  /** 0 none, 1 ratio, 2 topBlocks, 3 progressive. */
  choice: number; choiceValue: number; minBlocks: number; maxBlocks: number;
  boundEstimate: boolean; momentEstimate: boolean; shareAcrossGroup: boolean;
  /** topK > 0: count; topKRatio > 0: ratio; both 0: none. */
  topK: number; topKRatio: number;
  /** Polynomial exp2 coefficients, c0 first; absent: exact exp. */
  polyCoefficients?: Float32Array;
  returnLse: boolean; returnThresholds: boolean;
}

export interface NativeAttentionResult {
  output: NativeDeviceTensor;
  lse?: NativeDeviceTensor;
  thresholds?: NativeDeviceTensor;
  /** The layout selected on the device (sparse calls without a given layout). */
  layout?: NativeLayout;
  keptPairs: number;
  emptyRows: number;
}

export type AddonState =
  | { loaded: true; addon: NativeAddon; path: string; /** Probed once at load. */ runtime: NativeRuntimeInfo }
  | { loaded: false; reason: string };

let state: AddonState | undefined;
let emuState: AddonState | undefined;

/**
 * Builds the coded error for a native failure (the addon calls this; see binding/addon_state.cc).
 * `name` is the runtime's error name for 'cuda', 'oom' and 'unavailable', else the argument at fault.
 */
export function nativeError(kind: string, name: string, message: string): Error {
  const argument = name || undefined;
  switch (kind) {
    case 'unavailable': return new BackendUnavailableError('cuda', `${message} (${name})`);
    case 'oom': return new OutOfMemoryError(name.startsWith('cuda') ? `${message} (${name})` : message, name.startsWith('cuda') ? undefined : argument);
    case 'cuda': return new CudaError(name, message);
    case 'disposed': return new DisposedError('Tensor', argument ?? 'tensor');
    case 'shape': return new ShapeError(message, argument);
    case 'dtype': return new DtypeError(message, argument);
    case 'option': return new OptionError(message, argument);
    case 'value': return new ValueError(message, argument);
    default: return new PsaError('ERR_INTERNAL', message, argument);
  }
}

/**
 * Why a loaded addon's device can no longer be used (a sticky error lost the CUDA context
 * earlier in this process), or null. Asked live: the latch can close after load.
 */
export function unusableReason(addon: AddonState): string | null {
  // An addon from an older build has no latch to ask.
  if (!addon.loaded || typeof addon.addon.unusable !== 'function') return null;
  const u = addon.addon.unusable();
  return u ? `the device is unusable for the rest of this process: an earlier call failed with ${u.name} (${u.message}); restart the process` : null;
}

/** The addon, or why there is none. Cached per thread; never throws. */
export function loadAddon(): AddonState {
  if (state) return state;
  const root = packageRoot();
  try {
    const override = process.env.PSA_ADDON_PATH;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const path: string = override ? override : require('node-gyp-build').resolve(root);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const addon = require(path) as NativeAddon;
    addon.init(nativeError);
    state = { loaded: true, addon, path, runtime: addon.info() };
  } catch (e) {
    const first = String((e as Error).message ?? e).split('\n')[0];
    state = {
      loaded: false,
      reason: `no native addon for ${process.platform}-${process.arch} (${first}); build one with \`npx psa build\` (needs cmake and a C++ compiler, nvcc for CUDA)`,
    };
  }
  return state;
}

/**
 * The emulated build (CUDA sources on the CPU execution model, for tests and diagnosis):
 * PSA_EMU_ADDON_PATH, or build-emu/Release in a source checkout. Never shipped in a package.
 */
export function loadEmuAddon(): AddonState {
  if (emuState) return emuState;
  const path = process.env.PSA_EMU_ADDON_PATH ?? join(packageRoot(), 'build-emu', 'Release', 'psa_attention.node');
  if (!existsSync(path)) {
    emuState = { loaded: false, reason: `the emulated build is not present (${path}); build it in a source checkout with \`npm run build:emu\`` };
    return emuState;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const addon = require(path) as NativeAddon;
    addon.init(nativeError);
    emuState = { loaded: true, addon, path, runtime: addon.info() };
  } catch (e) {
    emuState = { loaded: false, reason: `the emulated build at ${path} does not load: ${String((e as Error).message ?? e).split('\n')[0]}` };
  }
  return emuState;
}

/** Forget the cached addons (after `psa build`, or in tests). */
export function resetAddon(): void {
  state = undefined;
  emuState = undefined;
}
