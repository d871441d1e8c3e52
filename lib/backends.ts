/**
 * Backend registry and choice. Each backend says whether it is usable here and why not;
 * `auto` takes the first usable one in order of preference and, when that is not cuda, warns
 * once per process with the reason.
 */
import { BackendUnavailableError, DtypeError } from './errors';
import { loadAddon, loadEmuAddon } from './native';
import { BlockLayout } from './layout';
import type { Inputs, Problem } from './problem';
import { layoutFor, ReferenceResult, runReference } from './reference';
import type { BackendName, Dtype } from './types';

export interface BackendStatus {
  name: Exclude<BackendName, 'auto'>;
  available: boolean;
  /** Why it is unavailable, or what it runs on. */
  reason: string;
  dtypes: readonly Dtype[];
}

export interface Backend {
  status(): BackendStatus;
  attention(p: Problem, inputs: Inputs): Promise<ReferenceResult>;
  buildLayout(p: Problem, inputs: Inputs): Promise<BlockLayout>;
}

const jsBackend: Backend = {
  status: () => ({ name: 'js', available: true, reason: 'JS reference, float32, on the calling thread', dtypes: ['float32'] }),
  async attention(p, inputs) {
    const [q, k, v] = await hostData(inputs);
    return runReference(p, q, k, v);
  },
  async buildLayout(p, inputs) {
    const [q, k] = await hostData(inputs);
    return layoutFor(p, q, k);
  },
};

function unavailable(name: 'cpu' | 'cuda' | 'cuda-emu', reason: string): Backend {
  const status = (): BackendStatus => ({ name, available: false, reason, dtypes: [] });
  const fail = async (): Promise<never> => {
    throw new BackendUnavailableError(name, reason);
  };
  return { status, attention: fail, buildLayout: fail };
}

/** Why the CUDA backend cannot run here, or null when a device could run its kernels. */
export function cudaUnusableReason(): string | null {
  const addon = loadAddon();
  if (!addon.loaded) return addon.reason;
  const rt = addon.runtime;
  if (rt.error) return `${rt.error.message} (${rt.error.name}, ${rt.error.code})`;
  if (rt.flavor !== 'cuda') return `the loaded addon is the ${rt.flavor} build, not a device build`;
  const usable = rt.devices.filter((d) => Number(d.computeCapability.split('.')[0]) >= 8);
  if (!usable.length) return `no device of compute capability 8.0 or newer (found ${rt.devices.map((d) => `${d.name} ${d.computeCapability}`).join(', ')})`;
  return null;
}

const cudaBackend: Backend = {
  status() {
    const why = cudaUnusableReason();
    // Device tensors work wherever a device does; the attention kernels arrive in a later version.
    const reason = why ?? 'a CUDA device is usable for tensors, but this version has no CUDA attention kernels yet';
    return { name: 'cuda', available: false, reason, dtypes: [] };
  },
  attention: async () => {
    throw new BackendUnavailableError('cuda', cudaBackend.status().reason);
  },
  buildLayout: async () => {
    throw new BackendUnavailableError('cuda', cudaBackend.status().reason);
  },
};

/** The emulated build: reachable by name for tests and diagnosis, never chosen by `auto`. */
function emuBackend(): Backend {
  const status = (): BackendStatus => {
    const emu = loadEmuAddon();
    const reason = emu.loaded
      ? `emulated build at ${emu.path} (tensors and the model checks run; the CUDA attention kernels are not in this version yet)`
      : emu.reason;
    return { name: 'cuda-emu', available: false, reason, dtypes: [] };
  };
  const fail = async (): Promise<never> => {
    throw new BackendUnavailableError('cuda-emu', status().reason);
  };
  return { status, attention: fail, buildLayout: fail };
}

const registry: Record<Exclude<BackendName, 'auto'>, Backend> = {
  cuda: cudaBackend,
  cpu: unavailable('cpu', 'the native CPU backend is not part of this version'),
  'cuda-emu': emuBackend(),
  js: jsBackend,
};

/** Preference order for `auto` (cuda-emu is for tests and diagnosis only and is never chosen). */
const AUTO_ORDER = ['cuda', 'cpu', 'js'] as const;

export function backendStatuses(): BackendStatus[] {
  return (Object.keys(registry) as (keyof typeof registry)[]).map((n) => registry[n].status());
}

/** Pick the backend for a problem, or throw ERR_BACKEND_UNAVAILABLE / ERR_DTYPE with the reason. */
export function chooseBackend(p: Problem): { name: Exclude<BackendName, 'auto'>; backend: Backend } {
  if (p.backend !== 'auto') {
    const backend = registry[p.backend];
    const s = backend.status();
    if (!s.available) throw new BackendUnavailableError(p.backend, s.reason);
    if (!s.dtypes.includes(p.dtype)) throw new DtypeError(`backend '${p.backend}' computes in ${s.dtypes.join(', ')}, not ${p.dtype}`, 'dtype');
    return { name: p.backend, backend };
  }
  for (const name of AUTO_ORDER) {
    const s = registry[name].status();
    if (s.available && s.dtypes.includes(p.dtype)) {
      if (name !== 'cuda') warnFallbackOnce(name, registry.cuda.status().reason);
      return { name, backend: registry[name] };
    }
  }
  throw new DtypeError(`no available backend computes in ${p.dtype}: ${backendStatuses().map((s) => `${s.name}: ${s.available ? s.dtypes.join('/') : s.reason}`).join('; ')}`, 'dtype');
}

async function hostData(inputs: Inputs): Promise<Float32Array[]> {
  if (inputs.kind === 'host') return [inputs.q, inputs.k, inputs.v];
  return Promise.all([inputs.q.download(), inputs.k.download(), inputs.v.download()]);
}

let warned = false;

/** One warning per process when `auto` does not get CUDA, saying why. */
function warnFallbackOnce(chosen: string, reason: string): void {
  if (warned) return;
  warned = true;
  process.emitWarning(`backend 'auto' is using '${chosen}': CUDA is unavailable: ${reason}`, { code: 'PSA_BACKEND_FALLBACK', type: 'PsaWarning' });
}
