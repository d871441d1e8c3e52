/**
 * `psa profile --decode`: one decode step against a `cuda-emu` KvCache with the execution
 * model's counters on, per kernel of the step (plan, pages read, top-k, split-KV attention,
 * combine) in the same figures as `psa profile` for attention: barriers per CTA (the plan's walk
 * rounds show here), global bytes read, shared traffic, and the host's counts per step. The
 * cache holds the demo's synthetic context (topic segments and a planted needle); the queries
 * are the context's next rows (topic rows, without the needle's direction: their mass is spread
 * over the pages of their topic, the walk's long case). Run twice with identical options; the second
 * (steady state) is reported, the first's host counts beside it.
 */
import { decode, type DecodeOptions, type DecodeStats } from './decode';
import { syntheticCase } from './demo';
import { OptionError, ShapeError } from './errors';
import { KvCache } from './kv-cache';
import { counters, formatHost, formatKernels, kernelProfile, type CounterSnapshot, type HostCounters, type KernelProfile } from './profile';

export interface DecodeProfileOptions {
  /** Tokens in the cache. */
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  pageSize?: number;
  window?: number;
  globalTokens?: number;
  ratio?: number;
  progressive?: number;
  estimate?: 'mean' | 'bound' | 'moment';
  seed?: number;
}

export interface DecodeProfileReport {
  case: { seq: number; heads: number; kvHeads: number; headDim: number; pageSize: number; options: DecodeOptions };
  /** The second of two identical steps. */
  kernels: KernelProfile[];
  stats: DecodeStats;
  call: HostCounters;
  firstCall: HostCounters;
}

export const DECODE_PROFILE_DEFAULTS = { seq: 4096, heads: 8, kvHeads: 2, headDim: 64, pageSize: 32, seed: 1 } as const;

function decodeOptions(o: DecodeProfileOptions): DecodeOptions {
  const opts: DecodeOptions = { heads: o.heads, backend: 'cuda-emu' };
  if (o.window !== undefined) opts.window = o.window;
  if (o.globalTokens !== undefined) opts.globalTokens = o.globalTokens;
  if (o.ratio !== undefined && o.progressive !== undefined) throw new OptionError('give one of ratio and progressive, not both', 'progressive');
  if (o.ratio !== undefined) opts.blocks = { ratio: o.ratio };
  if (o.progressive !== undefined) opts.blocks = { progressive: o.progressive };
  if (o.estimate !== undefined) opts.estimate = o.estimate;
  return opts;
}

/** Profile one decode step (the second of two identical ones) on the emulated build. */
export async function runDecodeProfile(o: DecodeProfileOptions): Promise<DecodeProfileReport> {
  const count = counters();
  const options = decodeOptions(o);
  const { seq, heads, kvHeads, headDim } = o;
  if (heads % kvHeads !== 0) throw new ShapeError(`heads (${heads}) must be a multiple of kvHeads (${kvHeads})`, 'kvHeads');
  const pageSize = o.pageSize ?? DECODE_PROFILE_DEFAULTS.pageSize;
  const G = heads / kvHeads;
  // Per kv head, seq cached tokens and then G rows: the queries of its group's heads.
  const c = syntheticCase(kvHeads, seq + G, headDim, o.seed ?? DECODE_PROFILE_DEFAULTS.seed, true, 0);
  const k = new Float32Array(kvHeads * seq * headDim);
  const v = new Float32Array(k.length);
  const q = new Float32Array(heads * headDim);
  for (let hk = 0; hk < kvHeads; hk++) {
    const from = hk * (seq + G) * headDim;
    k.set(c.k.subarray(from, from + seq * headDim), hk * seq * headDim);
    v.set(c.v.subarray(from, from + seq * headDim), hk * seq * headDim);
    q.set(c.q.subarray(from + seq * headDim, from + (seq + G) * headDim), hk * G * headDim);
  }
  const cache = await KvCache.create({ batch: 1, kvHeads, headDim, capacity: seq, pageSize, location: 'cuda-emu' });
  try {
    await cache.append(k, v);
    const calls: CounterSnapshot[] = [];
    let stats: DecodeStats | undefined;
    try {
      for (let i = 0; i < 2; i++) {
        count('start');
        stats = (await decode(q, cache, options)).stats;
        calls.push(count('take') as CounterSnapshot);
      }
    } finally {
      count('stop');
    }
    return {
      case: { seq, heads, kvHeads, headDim, pageSize, options },
      kernels: calls[1].kernels.map(kernelProfile),
      stats: stats as DecodeStats,
      call: calls[1].host,
      firstCall: calls[0].host,
    };
  } finally {
    cache.dispose();
  }
}

/** The report as a table: one line per kernel of the step, its pages, then the host's counts. */
export function formatDecodeProfile(r: DecodeProfileReport): string {
  const c = r.case;
  const { backend: _b, heads: _h, ...rest } = c.options;
  const sparse = Object.keys(rest).length ? JSON.stringify(rest) : 'dense';
  const s = r.stats;
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  return [
    `psa profile --decode on the emulated build: ${c.seq} cached tokens, heads ${c.heads}, kv heads ${c.kvHeads}, head dim ${c.headDim}, pages of ${c.pageSize}, ${sparse}`,
    '',
    ...formatKernels(r.kernels),
    '',
    `pages read ${s.pagesRead} of ${s.pagesReadDense} (${pct(s.pagesRead / s.pagesReadDense)}), visited ${s.pagesVisited} of ${s.pagesDense} over rows; estimated dropped mass max ${pct(s.droppedMass.max)}, mean ${pct(s.droppedMass.mean)}`,
    formatHost(r.call, r.firstCall),
  ].join('\n');
}
