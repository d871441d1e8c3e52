/**
 * `psa profile`: one attention call on the emulated build with its performance counters on
 * (cuda/emu/counters.h), reduced to the ratios that predict a kernel's speed on a device:
 * shared bytes per Tensor Core FLOP, global sector efficiency, bank-conflict ways, barriers and
 * exponentials per kernel, and the host's synchronisations and device allocations per call.
 * The inputs are uploaded as float16 device tensors first; the call is run twice with identical
 * options and the second (steady state) is reported, the first beside it.
 */
import { attention } from './attention';
import { syntheticCase } from './demo';
import { PsaError } from './errors';
import { loadEmuAddon } from './native';
import { Tensor } from './tensor';
import type { AttentionOptions } from './types';

export interface ProfileOptions {
  seq: number;
  heads: number;
  headDim: number;
  /** Sparse options, as bench's: a sliding window, sinks, and blocks by ratio or progressive mass. None: dense causal. */
  window?: number;
  globalTokens?: number;
  ratio?: number;
  progressive?: number;
  blockSize?: number;
  topK?: number;
  seed?: number;
}

/** Shared-memory traffic of one instruction class, as the model counts it. */
export interface SharedTraffic {
  requests: number;
  wavefronts: number;
  ideal: number;
  bytes: number;
  maxWays: number;
}

/** Global-memory traffic of one instruction class (32-byte sectors). */
export interface GlobalTraffic {
  requests: number;
  sectors: number;
  bytesUsed: number;
}

/** The addon's record of one kernel, summed over its launches in the call. */
export interface KernelCounters {
  name: string;
  launches: number;
  ctas: number;
  tensorFlops: number;
  ldmatrix: SharedTraffic;
  sharedLoad: SharedTraffic;
  sharedStore: SharedTraffic;
  sharedAtomic: SharedTraffic;
  cpAsyncShared: SharedTraffic;
  globalLoad: GlobalTraffic;
  globalStore: GlobalTraffic;
  globalAtomic: GlobalTraffic;
  cpAsyncGlobal: GlobalTraffic;
  cpAsyncBytes: number;
  barriers: number;
  exp2: number;
}

export interface HostCounters {
  syncs: number;
  allocations: number;
  frees: number;
}

export interface CounterSnapshot {
  kernels: KernelCounters[];
  launches: number;
  host: HostCounters;
}

/** One kernel's figures. Ratios are null where their denominator is 0 (no FLOPs, no access of that kind). */
export interface KernelProfile {
  name: string;
  launches: number;
  ctas: number;
  tensorFlops: number;
  /** Bytes of every shared access: ldmatrix, loads, stores, atomics and cp.async's writes. */
  sharedBytes: number;
  sharedBytesPerFlop: number | null;
  /** Wavefronts served over the conflict-free minimum, over every shared access. */
  conflictWaysMean: number | null;
  /** The worst warp instruction's wavefronts in one phase. */
  conflictWaysMax: number;
  /** Bytes used over bytes of the 32-byte sectors touched, over every global access (cp.async's reads included). */
  sectorEfficiency: number | null;
  cpAsyncBytes: number;
  /** Bytes of the 32-byte sectors global loads and cp.async reads touched: what the kernel reads from L2 or HBM. */
  globalBytesRead: number;
  barriers: number;
  /** Barriers over CTAs: the serial steps one CTA waits through. */
  barriersPerCta: number | null;
  exp2: number;
  counters: KernelCounters;
}

export interface ProfileReport {
  case: { seq: number; heads: number; headDim: number; causal: true; options: AttentionOptions };
  /** The second of two identical calls. */
  kernels: KernelProfile[];
  call: HostCounters;
  firstCall: HostCounters;
}

export const PROFILE_DEFAULTS = { seq: 256, heads: 2, headDim: 64, seed: 1 } as const;

const SHARED: (keyof KernelCounters)[] = ['ldmatrix', 'sharedLoad', 'sharedStore', 'sharedAtomic', 'cpAsyncShared'];
const GLOBAL: (keyof KernelCounters)[] = ['globalLoad', 'globalStore', 'globalAtomic', 'cpAsyncGlobal'];

/** The figures of one kernel record. */
export function kernelProfile(k: KernelCounters): KernelProfile {
  const shared = SHARED.map((c) => k[c] as SharedTraffic);
  const global = GLOBAL.map((c) => k[c] as GlobalTraffic);
  const sum = <T>(xs: T[], f: (x: T) => number) => xs.reduce((a, x) => a + f(x), 0);
  const sharedBytes = sum(shared, (t) => t.bytes);
  const ideal = sum(shared, (t) => t.ideal);
  const sectors = sum(global, (t) => t.sectors);
  return {
    name: k.name,
    launches: k.launches,
    ctas: k.ctas,
    tensorFlops: k.tensorFlops,
    sharedBytes,
    sharedBytesPerFlop: k.tensorFlops > 0 ? sharedBytes / k.tensorFlops : null,
    conflictWaysMean: ideal > 0 ? sum(shared, (t) => t.wavefronts) / ideal : null,
    conflictWaysMax: Math.max(0, ...shared.map((t) => t.maxWays)),
    sectorEfficiency: sectors > 0 ? sum(global, (t) => t.bytesUsed) / (32 * sectors) : null,
    cpAsyncBytes: k.cpAsyncBytes,
    globalBytesRead: 32 * (k.globalLoad.sectors + k.cpAsyncGlobal.sectors),
    barriers: k.barriers,
    barriersPerCta: k.ctas > 0 ? k.barriers / k.ctas : null,
    exp2: k.exp2,
    counters: k,
  };
}

function attentionOptions(o: ProfileOptions): AttentionOptions {
  const opts: AttentionOptions = { causal: true, backend: 'cuda-emu' };
  if (o.window !== undefined) opts.window = o.window;
  if (o.globalTokens !== undefined) opts.globalTokens = o.globalTokens;
  if (o.ratio !== undefined && o.progressive !== undefined) throw new PsaError('ERR_OPTION', 'give one of ratio and progressive, not both', 'progressive');
  if (o.ratio !== undefined) opts.blocks = { ratio: o.ratio };
  if (o.progressive !== undefined) {
    opts.blocks = { progressive: o.progressive };
    opts.estimate = 'bound';
  }
  if (o.blockSize !== undefined) opts.blockSize = o.blockSize;
  if (o.topK !== undefined) opts.topK = o.topK;
  return opts;
}

/** The emulated build's counter switch: 'start' (zeroed, on), 'take' (the counts since, zeroed), 'stop'. */
export function counters(): (action: 'start' | 'stop' | 'take') => CounterSnapshot | undefined {
  const emu = loadEmuAddon();
  if (!emu.loaded) throw new PsaError('ERR_BACKEND_UNAVAILABLE', `psa profile runs on the emulated build: ${emu.reason}`);
  const fn = (emu.addon as unknown as { counters?: (action: string) => CounterSnapshot | undefined }).counters;
  if (typeof fn !== 'function') throw new PsaError('ERR_BACKEND_UNAVAILABLE', `the emulated build at ${emu.path} has no performance counters; rebuild it (npm run build:emu)`);
  return (action) => fn(action);
}

/** Profile one attention call (the second of two identical ones) on the emulated build. */
export async function runProfile(o: ProfileOptions): Promise<ProfileReport> {
  const count = counters();
  const options = attentionOptions(o);
  const { seq, heads, headDim } = o;
  const host = syntheticCase(heads, seq, headDim, o.seed ?? PROFILE_DEFAULTS.seed);
  const dims = [1, heads, seq, headDim];
  const inputs: Tensor[] = [];
  try {
    for (const x of [host.q, host.k, host.v]) inputs.push(await Tensor.upload(x, dims, { type: 'float16', location: 'cuda-emu' }));
    const [q, k, v] = inputs;
    const calls: CounterSnapshot[] = [];
    for (let i = 0; i < 2; i++) {
      count('start');
      const r = await attention(q, k, v, options);
      calls.push(count('take') as CounterSnapshot);
      r.output.dispose();
    }
    return {
      case: { seq, heads, headDim, causal: true, options },
      kernels: calls[1].kernels.map(kernelProfile),
      call: calls[1].host,
      firstCall: calls[0].host,
    };
  } finally {
    count('stop');
    for (const t of inputs) t.dispose();
  }
}

const fixed = (x: number | null, digits: number) => (x === null ? '-' : x.toFixed(digits));

/** One line per kernel: the figures that predict its speed on a device. */
export function formatKernels(kernels: KernelProfile[]): string[] {
  const width = Math.max(6, ...kernels.map((k) => k.name.length));
  const lines = [
    `${'kernel'.padEnd(width)}  ${'launch'.padStart(6)} ${'CTAs'.padStart(5)} ${'TC MFLOP'.padStart(9)} ${'shared B/FLOP'.padStart(13)} ${'ways mean'.padStart(9)} ${'max'.padStart(4)} ` +
      `${'global KB read'.padStart(14)} ${'sector eff'.padStart(10)} ${'barriers'.padStart(8)} ${'per CTA'.padStart(7)} ${'exp2'.padStart(9)}`,
  ];
  for (const k of kernels) {
    lines.push(
      `${k.name.padEnd(width)}  ${String(k.launches).padStart(6)} ${String(k.ctas).padStart(5)} ${(k.tensorFlops / 1e6).toFixed(2).padStart(9)} ${fixed(k.sharedBytesPerFlop, 4).padStart(13)} ` +
        `${fixed(k.conflictWaysMean, 2).padStart(9)} ${String(k.conflictWaysMax).padStart(4)} ${(k.globalBytesRead / 1024).toFixed(1).padStart(14)} ` +
        `${(k.sectorEfficiency === null ? '-' : `${(100 * k.sectorEfficiency).toFixed(1)}%`).padStart(10)} ${String(k.barriers).padStart(8)} ${fixed(k.barriersPerCta, 1).padStart(7)} ${String(k.exp2).padStart(9)}`,
    );
  }
  return lines;
}

/** The host's counts of the second of two identical calls, the first's beside them. */
export function formatHost(call: HostCounters, firstCall: HostCounters): string {
  return `per call (second of two): ${call.syncs} host syncs, ${call.allocations} device allocations, ${call.frees} frees (first call: ${firstCall.syncs}, ${firstCall.allocations}, ${firstCall.frees})`;
}

/** The report as a table: one line per kernel, then the host's counts per call. */
export function formatProfile(r: ProfileReport): string {
  const c = r.case;
  const { backend: _b, causal: _c, ...rest } = r.case.options;
  const sparse = Object.keys(rest).length ? JSON.stringify(rest) : 'dense';
  return [`psa profile on the emulated build: seq ${c.seq}, heads ${c.heads}, head dim ${c.headDim}, causal, ${sparse}`, '', ...formatKernels(r.kernels), '', formatHost(r.call, r.firstCall)].join('\n');
}
