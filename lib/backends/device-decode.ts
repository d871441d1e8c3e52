/**
 * Decode on a device (the cuda and cuda-emu backends): a KvCache's page pool in device memory,
 * appends rounded on the device, one decode step through the addon (binding/decode.cc →
 * cuda/decode/decode.cu: the page plan, split-KV attention and the LSE combine, one wait for the
 * result), and mergeAttention on device tensors through the same combine kernel.
 */
import { BackendUnavailableError, OptionError } from '../errors';
import { loadAddon, loadEmuAddon, NativeAddon, NativeDeviceTensor } from '../native';
import type { DecodeProblem } from '../reference/decode';
import { cudaBackend, cudaEmuBackend } from './device';

export type DeviceLocation = 'cuda' | 'cuda-emu';
export type PoolType = 'float16' | 'bfloat16';

/** The geometry of a pool as the addon checks it. */
export interface PoolGeometry {
  kvHeads: number;
  pageSize: number;
  headDim: number;
}

interface NativeDecodeResult {
  output: NativeDeviceTensor;
  lse?: NativeDeviceTensor;
  kept: Int32Array;
  visited: Int32Array;
  dropped: Float32Array;
  pagesRead: number;
  maxPages: number;
  pageFlags?: Uint8Array;
  /** A larger step workspace, when the one handed in was too small: the pool keeps it. */
  workspace?: NativeDeviceTensor;
}

/** The decode entry points of the addon (binding/kv_cache.cc, binding/decode.cc). */
interface NativeDecodeAddon {
  kvPoolCreate(request: PoolGeometry & { pages: number; dtype: PoolType; device: number }): Promise<{ keys: NativeDeviceTensor; values: NativeDeviceTensor; meta: NativeDeviceTensor }>;
  kvPoolAppend(keys: NativeDeviceTensor, values: NativeDeviceTensor, meta: NativeDeviceTensor, k: NativeDeviceTensor, v: NativeDeviceTensor, request: object): Promise<void>;
  decode(q: NativeDeviceTensor, keys: NativeDeviceTensor, values: NativeDeviceTensor, meta: NativeDeviceTensor, request: object, workspace?: NativeDeviceTensor): Promise<NativeDecodeResult>;
  mergeAttention(outputs: NativeDeviceTensor[], lses: NativeDeviceTensor[], headDim: number): Promise<{ output: NativeDeviceTensor; lse: NativeDeviceTensor }>;
}

/** The addon of `location` with its decode entry points, or ERR_BACKEND_UNAVAILABLE with the reason. */
export function decodeAddon(location: DeviceLocation): NativeAddon & NativeDecodeAddon {
  const status = (location === 'cuda' ? cudaBackend : cudaEmuBackend).status();
  if (!status.available) throw new BackendUnavailableError(location, status.reason);
  const a = location === 'cuda' ? loadAddon() : loadEmuAddon();
  if (!a.loaded) throw new BackendUnavailableError(location, a.reason);
  const addon = a.addon as NativeAddon & Partial<NativeDecodeAddon>;
  if (typeof addon.decode !== 'function') throw new BackendUnavailableError(location, `the ${location} addon at ${a.path} predates decode on the device; rebuild it`);
  return addon as NativeAddon & NativeDecodeAddon;
}

/** One append, planned on the host: where each token goes and which pages' metadata to redo. */
export interface AppendPlan {
  sequences: number;
  n: number;
  /** [sequences][n]: page * pageSize + slot. */
  slots: Int32Array;
  touched: Int32Array;
  touchedKeys: Int32Array;
}

/**
 * A KvCache's page pool on a device: keys, values (16-bit) and page metadata (float32), and the
 * step workspace every decode step carves its temporaries from (grown by a step that needs more,
 * freed with the pool). A step must not overlap another on the same pool (they share that
 * workspace): KvCache runs its device work, appends and steps, one after another (onDevice).
 */
export class DevicePool {
  #workspace: NativeDeviceTensor | null = null;

  private constructor(
    readonly location: DeviceLocation,
    readonly dtype: PoolType,
    readonly geometry: PoolGeometry,
    readonly pages: number,
    private readonly keys: NativeDeviceTensor,
    private readonly values: NativeDeviceTensor,
    private readonly meta: NativeDeviceTensor,
  ) {}

  static async create(location: DeviceLocation, dtype: PoolType, geometry: PoolGeometry, pages: number, device: number): Promise<DevicePool> {
    const addon = decodeAddon(location);
    const t = await addon.kvPoolCreate({ ...geometry, pages, dtype, device });
    return new DevicePool(location, dtype, geometry, pages, t.keys, t.values, t.meta);
  }

  /** Writes the tokens of k and v ([sequences][kvHeads][n][headDim], float32 or 16-bit device tensors) where `plan` says. */
  async append(k: NativeDeviceTensor, v: NativeDeviceTensor, plan: AppendPlan): Promise<void> {
    await decodeAddon(this.location).kvPoolAppend(this.keys, this.values, this.meta, k, v, { ...this.geometry, ...plan });
  }

  /** Host float32 data as a temporary device tensor (rounded later, by the append, to the pool's type). */
  async upload(data: Float32Array): Promise<NativeDeviceTensor> {
    return decodeAddon(this.location).upload(data, 'float32', this.keys.device);
  }

  get device(): number {
    return this.keys.device;
  }

  /** One step: q a device tensor [batch][heads][m][headDim] (float32 or the pool's type). */
  async decode(q: NativeDeviceTensor, p: DecodeProblem, pageTable: Int32Array, tableStride: number, lengths: Int32Array): Promise<NativeDecodeResult> {
    const sel = p.selection;
    const request = {
      ...this.geometry,
      batch: p.sequences.length, heads: p.heads, m: p.m,
      pageTable, tableStride, lengths,
      scale: p.scale,
      windowLeft: p.windowLeft, windowRight: p.windowRight, globalTokens: p.globalTokens,
      sparse: p.windowLeft >= 0 || p.globalTokens > 0 || sel !== null,
      choice: sel ? CHOICE[sel.mode] : 0,
      choiceValue: sel ? sel.value : 0,
      minBlocks: sel ? Math.min(sel.minBlocks, 0x7fffffff) : 0,
      maxBlocks: sel ? Math.min(sel.maxBlocks, 0x7fffffff) : 0x7fffffff,
      estimate: sel ? ESTIMATE[sel.estimate as keyof typeof ESTIMATE] : 2,
      shareAcrossGroup: sel?.shareAcrossGroup ?? false,
      topK: p.topK?.kind === 'count' ? Math.min(p.topK.k, 0x7fffffff) : 0,
      topKRatio: p.topK?.kind === 'ratio' ? p.topK.ratio : 0,
      polyCoefficients: p.softmax.kind === 'poly' ? Float32Array.from(p.softmax.coefficients) : undefined,
      returnLse: p.returnLse,
      returnPages: p.returnPages,
    };
    const result = await decodeAddon(this.location).decode(q, this.keys, this.values, this.meta, request, this.#workspace ?? undefined);
    if (result.workspace && this.keys.disposed) {
      result.workspace.dispose();  // the pool went while the step ran
    } else if (result.workspace) {
      this.#workspace?.dispose();
      this.#workspace = result.workspace;
    }
    return result;
  }

  dispose(): void {
    this.#workspace?.dispose();
    this.#workspace = null;
    this.keys.dispose();
    this.values.dispose();
    this.meta.dispose();
  }
}

const CHOICE = { ratio: 1, topBlocks: 2, progressive: 3 } as const;
const ESTIMATE = { mean: 0, bound: 1, moment: 2 } as const;

/** Why the device decode cannot run `p` (null: it can); checked before any work. */
export function deviceDecodeUnsupported(p: DecodeProblem, pageSize: number): string | null {
  if (p.sequences.length * p.kvHeads > MAX_GRID_Z) return `batch x kvHeads (${p.sequences.length * p.kvHeads}) exceeds ${MAX_GRID_Z}, the launch grid's z limit`;
  const shared = attentionSharedBytes(pageSize, p.headDim);
  if (shared > MAX_SHARED_BYTES) return `pages of ${pageSize} tokens at head dim ${p.headDim} need ${shared} bytes of shared memory in the decode kernel; every device grants ${MAX_SHARED_BYTES}`;
  if (p.heads / p.kvHeads > MAX_GROUP) return `a kv group of ${p.heads / p.kvHeads} query heads exceeds the ${MAX_GROUP} the page plan holds`;
  if (pageSize > MAX_PAGE_SIZE) return `pages of ${pageSize} tokens exceed the ${MAX_PAGE_SIZE} the decode kernel stages in shared memory`;
  if (p.softmax.kind === 'poly' && p.softmax.coefficients.length - 1 > 8) return 'polynomials above degree 8 are not run by the device kernels';
  return null;
}

/** cuda/decode: kMaxGroup, kMaxPageSize, kMaxPlanPages, kMaxSharedBytes, attention_shared_bytes (traits.h). */
const MAX_GROUP = 256;
const MAX_GRID_Z = 65535;
const MAX_SHARED_BYTES = 99 * 1024;
const TILE_ROWS = 8;
const attentionSharedBytes = (pageSize: number, headDim: number) => TILE_ROWS * headDim * 8 + pageSize * headDim * 4 + TILE_ROWS * pageSize * 4;
export const MAX_PAGE_SIZE = 128;
export const MAX_PLAN_PAGES = 4096;

/** mergeAttention over device tensors: float32 outputs [rows][headDim] and lses [rows], on one device. */
export async function mergeOnDevice(location: DeviceLocation, outputs: NativeDeviceTensor[], lses: NativeDeviceTensor[], headDim: number) {
  if (outputs.length === 0) throw new OptionError('mergeAttention needs a non-empty array of parts', 'parts');
  return decodeAddon(location).mergeAttention(outputs, lses, headDim);
}
