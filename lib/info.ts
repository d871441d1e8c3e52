/** What this installation can do: version and each backend's availability with its reason. */
import { backendStatuses, BackendStatus, pickBackend } from './backends/registry';
import { classifyInputs, resolveProblem } from './problem';
import { addonReport, AddonReport } from './backends/device';
import { packageVersion } from './package-root';

export interface Info {
  version: string;
  node: string;
  platform: string;
  backends: BackendStatus[];
  /** The backend `auto` picks for a call on Float32Arrays with no dtype (what `attention` would run). */
  autoBackend: string;
  /** The native addon: where it was loaded from and what the CUDA runtime reported, or why there is none. */
  native: AddonReport;
}

export function info(): Info {
  const version = packageVersion();
  const backends = backendStatuses();
  const native = addonReport();
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
