/**
 * Backend registry and choice. Each backend says whether it is usable here and why not;
 * `auto` takes the first usable one in order of preference. Only the js reference exists in
 * this version: the native backends report what they need.
 */
import { BackendUnavailableError, DtypeError } from './errors';
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

const registry: Record<Exclude<BackendName, 'auto'>, Backend> = {
  cuda: unavailable('cuda', 'this version of psa-attention has no native addon; the CUDA kernels are not built yet'),
  cpu: unavailable('cpu', 'the native CPU backend is not part of this version'),
  'cuda-emu': unavailable('cuda-emu', 'the emulated CUDA build (for tests) is not part of this version'),
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
    if (s.available && s.dtypes.includes(p.dtype)) return { name, backend: registry[name] };
  }
  throw new DtypeError(`no available backend computes in ${p.dtype}: ${backendStatuses().map((s) => `${s.name}: ${s.available ? s.dtypes.join('/') : s.reason}`).join('; ')}`, 'dtype');
}

async function hostData(inputs: Inputs): Promise<Float32Array[]> {
  if (inputs.kind === 'host') return [inputs.q, inputs.k, inputs.v];
  return Promise.all([inputs.q.download(), inputs.k.download(), inputs.v.download()]);
}
