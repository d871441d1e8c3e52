/**
 * Tensor: a 4-D float tensor handle, in the spirit of onnxruntime-node's
 * `{ type, dims, data, location }`. Tensors on `cpu` hold a Float32Array; device tensors
 * (from the native addon) hold a native handle and are read back with `download()`.
 * `dispose()` (or `using`) frees the storage; any later use throws ERR_DISPOSED. A device call
 * in flight holds its own share of its inputs' memory, so disposing them meanwhile is safe.
 */
import { types } from 'node:util';
import { BackendUnavailableError, DisposedError, DtypeError, OptionError, ShapeError, ValueError } from './errors';
import { checkRawValues, checkValues, OVERFLOW_BOUND, refusal } from './finite';
import { DeviceStorage, firstNonFiniteEach, uploadStorage } from './backends/device-storage';

// Node 20 may lack Symbol.dispose; TypeScript's `using` looks it up at run time.
if (!(Symbol as { dispose?: symbol }).dispose) (Symbol as { dispose?: symbol }).dispose = Symbol.for('nodejs.dispose');

export type TensorLocation = 'cpu' | 'cuda' | 'cuda-emu';
export type TensorType = 'float32' | 'float16' | 'bfloat16';

/** What a backend stores behind a Tensor. */
export interface TensorStorage {
  readonly location: TensorLocation;
  readonly type: TensorType;
  /** Host copy as float32 (widening 16-bit types). */
  read(): Promise<Float32Array>;
  dispose(): void;
}

class CpuStorage implements TensorStorage {
  readonly location = 'cpu' as const;
  readonly type = 'float32' as const;
  constructor(public data: Float32Array | null) {}
  async read(): Promise<Float32Array> {
    const data = this.data!;
    if (data.buffer.byteLength === 0 && data.length === 0) throw new ShapeError("the tensor's data was detached (its ArrayBuffer was transferred)", 'tensor');
    return data.slice();
  }
  dispose(): void {
    this.data = null;
  }
}

export { DeviceStorage } from './backends/device-storage';

/** The largest device index the runtime takes (a 32-bit int). */
const MAX_DEVICE = 0x7fffffff;

export interface UploadOptions {
  /** Storage type on the device: float32 as given, or rounded to nearest even float16 / bfloat16. Default float32. */
  type?: TensorType;
  /** Device index. Default 0. */
  device?: number;
  /** 'cuda' (default), or 'cuda-emu' for the emulated build (tests and diagnosis). */
  location?: 'cuda' | 'cuda-emu';
}

export class Tensor {
  readonly dims: readonly number[];
  #storage: TensorStorage | null;

  /** Wrap storage; use `Tensor.fromFloat32` for host data. */
  constructor(storage: TensorStorage, dims: readonly number[]) {
    this.#storage = storage;
    this.dims = Object.freeze([...dims]);
  }

  /**
   * A cpu tensor over `data` (not copied: later writes to `data` are seen) with the given dims.
   * Dims are 4-D in the order of the attention layout (`[B, H, N, D]` for bhnd).
   */
  static fromFloat32(data: Float32Array, dims: readonly number[]): Tensor {
    if (!types.isFloat32Array(data)) throw new DtypeError(`data must be a Float32Array, got ${data === null ? 'null' : typeof data === 'object' ? (data as object).constructor?.name : typeof data}`, 'data');
    checkDims(dims);
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new ShapeError(`data holds ${data.length} floats but dims [${dims.join(', ')}] need ${n}`, 'data');
    return new Tensor(new CpuStorage(data), dims);
  }

  /**
   * Copy host data to a CUDA device. A Float32Array is stored as `options.type` (converted on
   * the device); a Uint16Array holds raw float16 or bfloat16 bit patterns and needs `type`.
   * The data is copied before this returns: changing or transferring it afterwards does not
   * affect the upload. Values must be finite and stay finite in `type` (lib/finite.ts), else
   * ERR_VALUE naming `data`. Rejects with ERR_BACKEND_UNAVAILABLE (and the reason) where no
   * device is usable.
   */
  static async upload(data: Float32Array | Uint16Array, dims: readonly number[], options: UploadOptions = {}): Promise<Tensor> {
    checkDims(dims);
    const n = dims.reduce((a, b) => a * b, 1);
    const raw16 = types.isUint16Array(data);
    if (!raw16 && !types.isFloat32Array(data)) throw new DtypeError('data must be a Float32Array, or a Uint16Array of 16-bit floats', 'data');
    if (data.length !== n) throw new ShapeError(`data holds ${data.length} values but dims [${dims.join(', ')}] need ${n}${data.length === 0 ? ' (was its buffer transferred?)' : ''}`, 'data');
    const type = options.type ?? (raw16 ? undefined : 'float32');
    if (type !== 'float32' && type !== 'float16' && type !== 'bfloat16') {
      throw new DtypeError(raw16 ? "a Uint16Array upload needs options.type 'float16' or 'bfloat16'" : `options.type must be 'float32', 'float16' or 'bfloat16', got ${String(type)}`, 'options.type');
    }
    if (raw16 && type === 'float32') throw new DtypeError("a Uint16Array holds 16-bit floats: options.type must be 'float16' or 'bfloat16'", 'options.type');
    const device = options.device ?? 0;
    if (!Number.isInteger(device) || device < 0 || device > MAX_DEVICE) {
      throw new OptionError(`options.device must be an integer in 0..${MAX_DEVICE}, got ${String(device)}`, 'options.device');
    }
    const location = options.location ?? 'cuda';
    if (location !== 'cuda' && location !== 'cuda-emu') throw new OptionError(`options.location must be 'cuda' or 'cuda-emu', got ${String(location)}`, 'options.location');
    if (raw16) checkRawValues('data', data as Uint16Array, type as 'float16' | 'bfloat16');
    else checkValues('data', data as Float32Array, type);
    return new Tensor(await uploadStorage(data, raw16, type, device, location), dims);
  }

  get type(): TensorType {
    return this.storage.type;
  }

  get location(): TensorLocation {
    return this.storage.location;
  }

  get size(): number {
    return this.dims.reduce((a, b) => a * b, 1);
  }

  get disposed(): boolean {
    return this.#storage === null;
  }

  /** The host data of a cpu tensor (no copy). Device tensors have none: use `download()`. */
  get data(): Float32Array {
    const s = this.storage;
    if (s instanceof CpuStorage) return s.data!;
    throw new DtypeError(`a tensor on '${s.location}' has no host data; await tensor.download()`, 'tensor');
  }

  /** The storage behind the handle; throws ERR_DISPOSED after dispose(). */
  get storage(): TensorStorage {
    if (this.#storage === null) throw new DisposedError('Tensor', 'tensor');
    return this.#storage;
  }

  /** A float32 host copy (rejects with ERR_DISPOSED after dispose()). */
  async download(): Promise<Float32Array> {
    return this.storage.read();
  }

  /** Free the storage now. Calling it twice is allowed and does nothing the second time. */
  dispose(): void {
    const s = this.#storage;
    this.#storage = null;
    s?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Throws ERR_VALUE naming `name` when `tensor` holds a NaN or an infinity, or a value that
 * becomes one in `type` (the type the call computes in; default the tensor's own). Cpu tensors
 * are scanned here, device tensors on their device. Read the tensor's storage before the
 * first await, so a dispose() meanwhile cannot change what is checked.
 */
export async function checkTensorFinite(name: string, tensor: Tensor, type: TensorType = tensor.type): Promise<void> {
  const storage = tensor.storage;
  if (storage instanceof CpuStorage) {
    const data = storage.data!;
    if (data.buffer.byteLength === 0 && data.length === 0 && tensor.size > 0) throw new ShapeError(`${name}'s data was detached (its ArrayBuffer was transferred)`, name);
    checkValues(name, data, type);
    return;
  }
  if (!(storage instanceof DeviceStorage)) throw new DtypeError(`${name} has storage this version cannot check`, name);
  const index = await storage.firstNonFinite(OVERFLOW_BOUND[type]);
  if (index >= 0) throw new ValueError(refusal(name, index, null, type), name);
}

/**
 * checkTensorFinite of several named tensors, the device ones checked together (one wait per
 * location, up to 64 at a time); the first failure in the given order is thrown. Storages are
 * read before the first await, as there.
 */
export async function checkTensorsFinite(named: ReadonlyArray<readonly [string, Tensor]>, type: TensorType): Promise<void> {
  const failures = new Map<string, unknown>();
  const device: { name: string; storage: DeviceStorage }[] = [];
  const checks: Promise<void>[] = [];
  for (const [name, tensor] of named) {
    const storage = tensor.storage;
    if (storage instanceof DeviceStorage) device.push({ name, storage });
    else checks.push(checkTensorFinite(name, tensor, type).catch((e: unknown) => void failures.set(name, e)));
  }
  const groups = new Map<string, typeof device>();
  device.forEach((d, i) => {
    const key = `${d.storage.location}/${Math.floor(i / 64)}`;
    groups.set(key, [...(groups.get(key) ?? []), d]);
  });
  for (const group of groups.values()) {
    const run = async (): Promise<void> => {
      const indices = await firstNonFiniteEach(group.map((d) => d.storage), OVERFLOW_BOUND[type]);
      group.forEach((d, i) => {
        if (indices[i] >= 0) failures.set(d.name, new ValueError(refusal(d.name, indices[i], null, type), d.name));
      });
    };
    checks.push(run().catch((e: unknown) => void group.forEach((d) => failures.has(d.name) || failures.set(d.name, e))));
  }
  await Promise.all(checks);
  for (const [name] of named) if (failures.has(name)) throw failures.get(name);
}

function checkDims(dims: readonly number[]): void {
  if (!Array.isArray(dims) || dims.length !== 4 || !dims.every((d) => Number.isSafeInteger(d) && d >= 1)) {
    throw new ShapeError(`dims must be four positive integers, got ${JSON.stringify(dims)}`, 'dims');
  }
}
