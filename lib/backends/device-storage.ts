/**
 * Device tensors' storage: a buffer on a CUDA device (or in the emulated build's device
 * memory) owned by the addon. Part of the device backend: with the backends, the only code
 * that reaches the addon loader.
 */
import { BackendUnavailableError } from '../errors';
import { loadAddon, loadEmuAddon, NativeDeviceTensor } from '../native';
import type { TensorStorage, TensorType } from '../tensor';

export class DeviceStorage implements TensorStorage {
  constructor(
    readonly location: 'cuda' | 'cuda-emu',
    /** The addon's handle (device backends pass it to their kernels). */
    readonly native: NativeDeviceTensor,
  ) {}
  get type(): TensorType {
    return this.native.type;
  }
  read(): Promise<Float32Array> {
    return this.native.download();
  }
  /** The first index whose value x fails |x| < bound, checked on the device (-1: none). */
  firstNonFinite(bound: number): Promise<number> {
    const addon = this.location === 'cuda' ? loadAddon() : loadEmuAddon();
    if (!addon.loaded) return Promise.reject(new BackendUnavailableError(this.location, addon.reason));
    return addon.addon.firstNonFinite(this.native, bound);
  }
  dispose(): void {
    this.native.dispose();
  }
}

/** firstNonFinite of each storage (all of one location), checked at once with one wait on the device. */
export function firstNonFiniteEach(storages: readonly DeviceStorage[], bound: number): Promise<number[]> {
  const location = storages[0].location;
  const addon = location === 'cuda' ? loadAddon() : loadEmuAddon();
  if (!addon.loaded) return Promise.reject(new BackendUnavailableError(location, addon.reason));
  return addon.addon.firstNonFiniteEach(storages.map((s) => s.native), bound);
}


/**
 * Copy host data to a device (checked by the caller): a Float32Array stored as `type`, or a
 * Uint16Array of raw 16-bit patterns. The addon copies `data` before this returns its promise.
 */
export async function uploadStorage(data: Float32Array | Uint16Array, raw16: boolean, type: TensorType, device: number, location: 'cuda' | 'cuda-emu'): Promise<DeviceStorage> {
  const addon = location === 'cuda' ? loadAddon() : loadEmuAddon();
  if (!addon.loaded) throw new BackendUnavailableError(location, addon.reason);
  const pending = raw16 ? addon.addon.uploadRaw16(data as Uint16Array, type, device) : addon.addon.upload(data as Float32Array, type, device);
  return new DeviceStorage(location, await pending);
}
