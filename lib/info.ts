/** What this installation can do: version and each backend's availability with its reason. */
import { backendStatuses, BackendStatus, pickBackend } from './backends/registry';
import { classifyInputs, resolveProblem } from './problem';
import { loadAddon, NativeRuntimeInfo } from './native';
import { packageVersion } from './package-root';

export interface Info {
  version: string;
  node: string;
  platform: string;
  backends: BackendStatus[];
  /** The backend `auto` picks for a call on Float32Arrays with no dtype (what `attention` would run). */
  autoBackend: string;
  /** The native addon: where it was loaded from and what the CUDA runtime reported, or why there is none. */
  native: { loaded: true; path: string; runtime: NativeRuntimeInfo } | { loaded: false; reason: string };
}

export function info(): Info {
  const version = packageVersion();
  const backends = backendStatuses();
  const addon = loadAddon();
  // Probe again rather than reuse the load-time answer: free memory and devices can change.
  const native: Info['native'] = addon.loaded ? { loaded: true, path: addon.path, runtime: addon.addon.info() } : { loaded: false, reason: addon.reason };
  return { version, node: process.version, platform: `${process.platform}-${process.arch}`, backends, autoBackend: autoBackend(), native };
}


/** Ask the same choice `attention` makes, for a one-element Float32Array call. */
function autoBackend(): string {
  const x = new Float32Array(1);
  try {
    return pickBackend(resolveProblem(classifyInputs(x, x, x), { shape: { batch: 1, heads: 1, seqQ: 1, headDim: 1 } })).name;
  } catch {
    return 'none';
  }
}
