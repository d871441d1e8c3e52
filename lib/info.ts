/** What this installation can do: version and each backend's availability with its reason. */
import { backendStatuses, BackendStatus } from './backends';
import { loadAddon, NativeRuntimeInfo } from './native';
import { packageVersion } from './package-root';

export interface Info {
  version: string;
  node: string;
  platform: string;
  backends: BackendStatus[];
  /** The backend `auto` resolves to for float32. */
  autoBackend: string;
  /** The native addon: where it was loaded from and what the CUDA runtime reported, or why there is none. */
  native: { loaded: true; path: string; runtime: NativeRuntimeInfo } | { loaded: false; reason: string };
}

export function info(): Info {
  const version = packageVersion();
  const backends = backendStatuses();
  const preferred = ['cuda', 'cpu', 'js'].map((n) => backends.find((b) => b.name === n)!).find((b) => b.available && b.dtypes.includes('float32'));
  const addon = loadAddon();
  // Probe again rather than reuse the load-time answer: free memory and devices can change.
  const native: Info['native'] = addon.loaded ? { loaded: true, path: addon.path, runtime: addon.addon.info() } : { loaded: false, reason: addon.reason };
  return { version, node: process.version, platform: `${process.platform}-${process.arch}`, backends, autoBackend: preferred?.name ?? 'none', native };
}

