/**
 * `decode(q, cache, options)`: attention from the newest tokens of each cached sequence, with
 * PSA's per-token page selection (docs/decode.md). The result is `attention` on that sequence's
 * keys with `causal: true`, blocks of `cache.pageSize` and selection per query token, except
 * that `progressive` is PSA's rule on the exact visited mass.
 */
import { types } from 'node:util';
import { decodeOnDevice } from './backends/device-decode-step';
import { BackendUnavailableError, DtypeError, OptionError, ShapeError } from './errors';
import { checkValues } from './finite';
import { KvCache } from './kv-cache';
import { resolveSelection, resolveTopK, resolveWindowOption } from './problem';
import { cpuDecodeAddon, decodeOnCpu } from './backends/cpu-decode';
import { decodeReference, DecodeProblem, DecodeStats } from './reference/decode';
import { resolveSoftmax } from './softmax';
import { Tensor } from './tensor';
import type { BlocksOption, SoftmaxOption } from './types';
import { checkBoolean, checkInt, checkKeys, checkNumber, describe } from './validate';

export type { DecodeStats } from './reference/decode';

export interface DecodeOptions {
  /** Query heads; required for a Float32Array q (a Tensor carries its dims). */
  heads?: number;
  /** The cache sequences q's batch rows belong to, in order; default every sequence. */
  sequences?: readonly number[];
  scale?: number;
  softmax?: SoftmaxOption;
  /** `w`: the w most recent keys up to each query; `[left, right]`: p - left <= j <= p + right (right is cut by causality). */
  window?: number | readonly [number, number];
  /** Keys j < globalTokens are always attended to (sinks). */
  globalTokens?: number;
  /** Pages kept per query token: `{ ratio }`, `{ topBlocks }` or `{ progressive: τ }` (PSA's rule). */
  blocks?: BlocksOption;
  /** Page estimate from the page metadata: 'moment' (default), 'mean' or 'bound' (a certified bound). */
  estimate?: 'mean' | 'bound' | 'moment';
  /** One page selection per kv group instead of one per query head. */
  shareAcrossGroup?: boolean;
  topK?: number;
  topKRatio?: number;
  returnLse?: boolean;
  /** Also return `pages`: per query row, the cache pages it attended to. */
  returnPages?: boolean;
  /** Where the step runs: a host cache on 'cpu' (the native addon) or 'js', a device cache where it lives ('cuda' or 'cuda-emu'); 'auto' (default): the device of a device cache, else cpu where the addon has it, else js. */
  backend?: 'auto' | 'js' | 'cpu' | 'cuda' | 'cuda-emu';
  /** Threads the cpu backend decodes on, 1..1024. Default: the machine's hardware threads. */
  threads?: number;
  /** Reject NaN or infinite values in q (ERR_VALUE). Default true. */
  checkFinite?: boolean;
}

export interface DecodeResult {
  /** [batch, heads, m, headDim], as q. */
  output: Float32Array;
  /** [batch, heads, m]: natural-log sum of exponentials; -inf for rows with no kept key. */
  lse?: Float32Array;
  /** With returnPages, per row (b, h, i) in q's order: the pages (by index within the sequence) it attended to, ascending. */
  pages?: Int32Array[];
  stats: DecodeStats;
  backend: 'js' | 'cpu' | 'cuda' | 'cuda-emu';
}

const OPTION_KEYS = [
  'heads', 'sequences', 'scale', 'softmax', 'window', 'globalTokens', 'blocks', 'estimate', 'shareAcrossGroup',
  'topK', 'topKRatio', 'returnLse', 'returnPages', 'backend', 'checkFinite', 'threads',
] as const;

export async function decode(q: Float32Array | Tensor, cache: KvCache, options: DecodeOptions = {}): Promise<DecodeResult> {
  if (!(cache instanceof KvCache)) throw new OptionError(`cache must be a KvCache, got ${describe(cache)}`, 'cache');
  const store = cache.book; // ERR_DISPOSED when disposed
  if (typeof options !== 'object' || options === null) throw new OptionError('options must be an object', 'options');
  checkKeys('options', options, OPTION_KEYS);
  const requested = options.backend ?? 'auto';
  if (!['auto', 'js', 'cpu', 'cuda', 'cuda-emu'].includes(requested)) throw new OptionError(`backend must be 'auto', 'js', 'cpu', 'cuda' or 'cuda-emu', got ${describe(requested)}`, 'backend');
  const host = cache.location === 'cpu';
  const fits = host ? requested === 'auto' || requested === 'js' || requested === 'cpu' : requested === 'auto' || requested === cache.location;
  if (!fits) {
    throw new OptionError(`backend '${requested}' cannot decode a cache on '${cache.location}': decode runs where its cache is (${host ? "'js' or 'cpu' for a host cache" : `'${cache.location}'`})`, 'backend');
  }
  // A host cache decodes on cpu where the addon has it (as attention's auto), else on js.
  const cpu = host && requested !== 'js' ? cpuDecodeAddon() : null;
  if (requested === 'cpu' && cpu && 'reason' in cpu) throw new BackendUnavailableError('cpu', cpu.reason);
  const threads = options.threads === undefined ? null : checkInt('threads', options.threads, 1, 1024);

  const sequences = options.sequences === undefined ? Array.from({ length: cache.batch }, (_, i) => i) : [...options.sequences];
  if (!Array.isArray(options.sequences ?? sequences) || sequences.length === 0) throw new OptionError('sequences must be a non-empty array of sequence indices', 'sequences');
  const seen = new Set<number>();
  for (const s of sequences) {
    checkInt('sequences', s, 0, cache.batch - 1);
    if (seen.has(s)) throw new OptionError(`sequences names sequence ${s} twice`, 'sequences');
    seen.add(s);
  }

  const D = cache.headDim;
  let data: Float32Array | null = null;
  let heads: number;
  let m: number;
  if (q instanceof Tensor) {
    if (q.location !== 'cpu' && q.location !== cache.location) throw new OptionError(`q is a tensor on '${q.location}'; the cache is on '${cache.location}'`, 'q');
    const [b, h, qm, d] = q.dims;
    if (b !== sequences.length || d !== D) throw new ShapeError(`q dims [${q.dims}] must be [${sequences.length}, heads, m, ${D}]`, 'q');
    if (options.heads !== undefined && options.heads !== h) throw new ShapeError(`heads is ${options.heads} but q has ${h}`, 'heads');
    heads = h;
    m = qm;
    if (q.location === 'cpu') data = q.data;
  } else {
    if (!types.isFloat32Array(q)) throw new DtypeError(`q must be a Float32Array or a Tensor, got ${describe(q)}`, 'q');
    if (options.heads === undefined) throw new OptionError('heads is required with a Float32Array q ([batch, heads, m, headDim])', 'heads');
    heads = checkInt('heads', options.heads, 1, 2 ** 31 - 1, (m, a) => new ShapeError(m, a));
    data = q;
    m = q.length / (sequences.length * heads * D);
    if (!Number.isInteger(m) || m < 1) {
      throw new ShapeError(`q holds ${q.length} floats: it must be [${sequences.length}, ${heads}, m, ${D}] with m >= 1${q.length === 0 ? ' (was its buffer transferred?)' : ''}`, 'q');
    }
  }
  if (heads % cache.kvHeads !== 0) throw new ShapeError(`heads (${heads}) must be a multiple of the cache's kvHeads (${cache.kvHeads})`, 'heads');
  for (const s of sequences) {
    if (store.lengths[s] < m) throw new ShapeError(`sequence ${s} holds ${store.lengths[s]} tokens, fewer than the ${m} queries: append the queries' keys first`, 'q');
  }

  const window = resolveWindowOption(options.window, true);
  const selection = resolveSelection(options, ['mean', 'bound', 'moment'], 'moment');
  if (selection === null && (options.estimate !== undefined || options.shareAcrossGroup !== undefined)) {
    const key = options.estimate !== undefined ? 'estimate' : 'shareAcrossGroup';
    throw new OptionError(`${key} needs blocks (a page selection) to act on`, key);
  }
  const p: DecodeProblem = {
    sequences, heads, kvHeads: cache.kvHeads, m, headDim: D,
    scale: options.scale === undefined ? 1 / Math.sqrt(D) : checkNumber('scale', options.scale, -1e30, 1e30),
    softmax: resolveSoftmax(options.softmax),
    windowLeft: window[0], windowRight: window[1],
    globalTokens: options.globalTokens === undefined ? 0 : checkInt('globalTokens', options.globalTokens, 0, 2 ** 31 - 1),
    selection,
    topK: resolveTopK(options),
    returnLse: checkBoolean('returnLse', options.returnLse, false),
    returnPages: checkBoolean('returnPages', options.returnPages, false),
  };
  const checkFinite = checkBoolean('checkFinite', options.checkFinite, true);
  if (cache.location !== 'cpu') return decodeOnDevice(p, data ?? (q as Tensor), cache, checkFinite);
  // Computed now, before the promise is returned: nothing the caller does later can reach it.
  const own = data!.slice();
  if (checkFinite) checkValues('q', own, 'float32');
  const onCpu = cpu && 'addon' in cpu ? cpu.addon : null;
  const r = onCpu ? await cache.reading(() => decodeOnCpu(onCpu, p, own, cache, threads)) : decodeReference(p, own, cache);
  const result: DecodeResult = { output: r.output, stats: r.stats, backend: onCpu ? 'cpu' : 'js' };
  if (r.lse) result.lse = r.lse;
  if (r.pages) result.pages = r.pages;
  return result;
}
