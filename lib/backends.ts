/**
 * Backend registry and choice. Each backend says whether it is usable here and why not;
 * `auto` takes the first usable one in order of preference and, when that is not cuda, warns
 * once per process with the reason.
 */
import { cpuBackend } from './backends/cpu';
import { deviceBackend } from './device-backend';
import { BackendUnavailableError, DtypeError, OptionError } from './errors';
import { loadAddon, loadEmuAddon } from './native';
import { BlockLayout } from './layout';
import type { Inputs, Problem } from './problem';
import { layoutFor, ReferenceResult, runReference } from './reference';
import { DeviceStorage, Tensor } from './tensor';
import type { BackendName, Dtype } from './types';

export interface BackendStatus {
  name: Exclude<BackendName, 'auto'>;
  available: boolean;
  /** Why it is unavailable, or what it runs on. */
  reason: string;
  dtypes: readonly Dtype[];
}

/** What a backend returns: the output as host data, or as a device tensor for device inputs. */
export interface BackendResult extends Omit<ReferenceResult, 'output'> {
  output: Float32Array | Tensor;
}

export interface Backend {
  status(): BackendStatus;
  /** Why this backend cannot run this problem although it is available (null: it can). */
  unsupported?(p: Problem): string | null;
  /** Runs the problem; `p.dtype` is resolved (one of the backend's dtypes). */
  attention(p: Problem, inputs: Inputs): Promise<BackendResult>;
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

/** Why the emulated build cannot run here, or null. */
function emuUnusableReason(): string | null {
  const emu = loadEmuAddon();
  return emu.loaded ? null : emu.reason;
}

const registry: Record<Exclude<BackendName, 'auto'>, Backend> = {
  cuda: deviceBackend('cuda', loadAddon, cudaUnusableReason),
  cpu: cpuBackend(),
  'cuda-emu': deviceBackend('cuda-emu', loadEmuAddon, emuUnusableReason),
  js: jsBackend,
};

/** Preference order for `auto` (cuda-emu is for tests and diagnosis only and is never chosen). */
const AUTO_ORDER = ['cuda', 'cpu', 'js'] as const;

export function backendStatuses(): BackendStatus[] {
  return (Object.keys(registry) as (keyof typeof registry)[]).map((n) => registry[n].status());
}

/**
 * Pick the backend for a problem and resolve its dtype (a dtype left out is the backend's
 * first: float32 for js, float16 for the device backends), or throw ERR_BACKEND_UNAVAILABLE /
 * ERR_DTYPE / ERR_OPTION with the reason. `auto` prefers the backend where device-tensor
 * inputs live, then cuda, cpu, js, and warns once when it does not get CUDA.
 */
export function chooseBackend(p: Problem, inputs?: Inputs): { name: Exclude<BackendName, 'auto'>; backend: Backend; problem: Problem } {
  const fits = (name: Exclude<BackendName, 'auto'>): { problem: Problem } | { why: string } => {
    const backend = registry[name];
    const s = backend.status();
    if (!s.available) return { why: s.reason };
    const dtype = p.dtype ?? s.dtypes[0];
    if (!s.dtypes.includes(dtype)) return { why: `computes in ${s.dtypes.join(', ')}, not ${dtype}` };
    const unsupported = backend.unsupported?.(p);
    if (unsupported) return { why: unsupported };
    return { problem: { ...p, dtype } };
  };
  if (p.backend !== 'auto') {
    const f = fits(p.backend);
    if ('problem' in f) return { name: p.backend, backend: registry[p.backend], problem: f.problem };
    const s = registry[p.backend].status();
    if (!s.available) throw new BackendUnavailableError(p.backend, s.reason);
    if (f.why.startsWith('computes in')) throw new DtypeError(`backend '${p.backend}' ${f.why}`, 'dtype');
    throw new OptionError(`backend '${p.backend}' cannot run this call: ${f.why}`, 'backend');
  }
  const home = inputs?.kind === 'tensor' && inputs.q.storage instanceof DeviceStorage ? inputs.q.storage.location : null;
  const order = home === 'cuda-emu' ? (['cuda-emu', ...AUTO_ORDER] as const) : AUTO_ORDER;
  const reasons: string[] = [];
  for (const name of order) {
    const f = fits(name);
    if ('problem' in f) {
      if (name !== 'cuda' && name !== home) warnFallbackOnce(name, reasons.find((r) => r.startsWith('cuda: '))?.slice(6) ?? registry.cuda.status().reason);
      return { name, backend: registry[name], problem: f.problem };
    }
    reasons.push(`${name}: ${f.why}`);
  }
  throw new DtypeError(`no available backend runs this call in ${p.dtype ?? 'any precision'}: ${reasons.join('; ')}`, 'dtype');
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
