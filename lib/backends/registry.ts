/**
 * Backend registry and choice. Each backend says whether it is usable here and why not;
 * `auto` takes the first usable one in order of preference and, when that is not cuda, warns
 * once per process with the reason.
 */
import { BackendUnavailableError, DtypeError, OptionError } from '../errors';
import type { Inputs, Problem } from '../problem';
import { DeviceStorage } from '../tensor';
import type { BackendName } from '../types';
import type { Backend, BackendStatus } from './backend';
import { cpuBackend } from './cpu';
import { cudaBackend, cudaEmuBackend } from './device';
import { jsBackend } from './js';

export type { Backend, BackendGradients, BackendResult, BackendStatus, BackwardRequest, SavedKeptSets } from './backend';

type Name = Exclude<BackendName, 'auto'>;

const registry: Record<Name, Backend> = {
  cuda: cudaBackend,
  cpu: cpuBackend(),
  'cuda-emu': cudaEmuBackend,
  js: jsBackend,
};

/** Preference order for `auto`; cuda-emu only where the inputs already live there. */
const AUTO_ORDER = ['cuda', 'cpu', 'js'] as const;

export function backendStatuses(): BackendStatus[] {
  return (Object.keys(registry) as Name[]).map((n) => registry[n].status());
}

interface Choice {
  name: Name;
  backend: Backend;
  problem: Problem;
  /** Why each backend tried before it could not run the call (`auto` only). */
  passedOver: { name: Name; why: string }[];
}

/**
 * Pick the backend for a problem and resolve its dtype (a dtype left out is the backend's
 * first: float32 for js, float16 for the device backends), or throw ERR_BACKEND_UNAVAILABLE /
 * ERR_DTYPE / ERR_OPTION with the reason. `auto` prefers the backend where device-tensor
 * inputs live, then cuda, cpu, js. No side effects: `info()` asks it what `auto` would do.
 */
export function pickBackend(p: Problem, inputs?: Inputs): Choice {
  const fits = (name: Name): { problem: Problem } | { why: string } => {
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
    if ('problem' in f) return { name: p.backend, backend: registry[p.backend], problem: f.problem, passedOver: [] };
    const s = registry[p.backend].status();
    if (!s.available) throw new BackendUnavailableError(p.backend, s.reason);
    if (f.why.startsWith('computes in')) throw new DtypeError(`backend '${p.backend}' ${f.why}`, 'dtype');
    throw new OptionError(`backend '${p.backend}' cannot run this call: ${f.why}`, 'backend');
  }
  const home = inputs?.kind === 'tensor' && inputs.q.storage instanceof DeviceStorage ? inputs.q.storage.location : null;
  const order = home === 'cuda-emu' ? (['cuda-emu', ...AUTO_ORDER] as const) : AUTO_ORDER;
  const passedOver: Choice['passedOver'] = [];
  for (const name of order) {
    const f = fits(name);
    if ('problem' in f) return { name, backend: registry[name], problem: f.problem, passedOver };
    passedOver.push({ name, why: f.why });
  }
  const reasons = passedOver.map((r) => `${r.name}: ${r.why}`).join('; ');
  throw new DtypeError(`no available backend runs this call in ${p.dtype ?? 'any precision'}: ${reasons}`, 'dtype');
}

/**
 * The backend for a backward pass: the one named, or for `auto` the backend that computed the
 * forward when it has a backward pass for this problem, then cuda, cpu, js. The gradients are
 * float32 whatever the forward computed in; a backend that does not compute in the forward's
 * dtype uses its own (js recomputes a float16 forward's scores in float32).
 */
export function pickBackwardBackend(p: Problem, requested: BackendName, forwardBackend: Name): Choice {
  const fits = (name: Name): { problem: Problem } | { why: string } => {
    const backend = registry[name];
    const s = backend.status();
    if (!s.available) return { why: s.reason };
    if (!backend.backward) return { why: 'has no backward pass in this version' };
    const dtype = p.dtype !== null && s.dtypes.includes(p.dtype) ? p.dtype : s.dtypes[0];
    const problem = { ...p, dtype };
    const unsupported = backend.backwardUnsupported?.(problem);
    return unsupported ? { why: unsupported } : { problem };
  };
  if (requested !== 'auto') {
    const f = fits(requested);
    if ('problem' in f) return { name: requested, backend: registry[requested], problem: f.problem, passedOver: [] };
    const s = registry[requested].status();
    if (!s.available) throw new BackendUnavailableError(requested, s.reason);
    throw new OptionError(`backend '${requested}' cannot run this backward pass: ${f.why}`, 'backend');
  }
  const order = [forwardBackend, ...AUTO_ORDER.filter((n) => n !== forwardBackend)];
  const passedOver: Choice['passedOver'] = [];
  for (const name of order) {
    const f = fits(name);
    if ('problem' in f) return { name, backend: registry[name], problem: f.problem, passedOver };
    passedOver.push({ name, why: f.why });
  }
  throw new OptionError(`no available backend runs this backward pass: ${passedOver.map((r) => `${r.name}: ${r.why}`).join('; ')}`, 'backend');
}

/** `pickBackend`, warning once per process when `auto` does not get CUDA (or the inputs' own device). */
export function chooseBackend(p: Problem, inputs?: Inputs): Choice {
  const choice = pickBackend(p, inputs);
  const home = inputs?.kind === 'tensor' && inputs.q.storage instanceof DeviceStorage ? inputs.q.storage.location : null;
  if (p.backend === 'auto' && choice.name !== 'cuda' && choice.name !== home) {
    warnFallbackOnce(choice.name, choice.passedOver.find((r) => r.name === 'cuda')?.why ?? registry.cuda.status().reason);
  }
  return choice;
}

let warned = false;

/** One warning per process when `auto` does not get CUDA, saying why. */
function warnFallbackOnce(chosen: string, reason: string): void {
  if (warned) return;
  warned = true;
  process.emitWarning(`backend 'auto' is using '${chosen}': CUDA is unavailable: ${reason}`, { code: 'PSA_BACKEND_FALLBACK', type: 'PsaWarning' });
}
