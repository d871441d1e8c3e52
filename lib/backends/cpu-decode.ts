/**
 * Decode on the cpu backend: cpu/decode.cc (through binding/cpu_decode.cc) over a host
 * KvCache's pages, read in place on the addon's thread pool, off the event loop. The port of
 * the reference (lib/reference/decode.ts): the same kept pages, statistics and `pages`, the
 * output within the cpu profile's 1e-5 of the float64 oracle.
 */
import type { KvCache } from '../kv-cache';
import { AddonState, loadAddon } from '../native';
import type { DecodeOutput, DecodeProblem, DecodeStats } from '../reference/decode';

/** What binding/cpu_decode.cc resolves with: the stats of DecodeStats, flat (density is derived here). */
type NativeDecodeResult = Omit<DecodeStats, 'density' | 'droppedMass'> & {
  output: Float32Array;
  lse?: Float32Array;
  pages?: Int32Array[];
  droppedMax: number;
  droppedMean: number;
};

interface CpuDecodeAddon {
  cpuInfo(): { simd: string; threads: number };
  cpuDecode(q: Float32Array, cache: object, request: object): Promise<NativeDecodeResult>;
}

const RULES = { ratio: 1, topBlocks: 2, progressive: 3 } as const;
const ESTIMATES = { mean: 0, bound: 1, moment: 2 } as const;

/** The addon's cpu decode, or why there is none. */
export function cpuDecodeAddon(load: () => AddonState = loadAddon): { addon: CpuDecodeAddon } | { reason: string } {
  const a = load();
  if (!a.loaded) return { reason: a.reason };
  const addon = a.addon as unknown as Partial<CpuDecodeAddon>;
  if (typeof addon.cpuDecode !== 'function') return { reason: `the addon at ${a.path} was built without the cpu decode; rebuild it with \`npx psa build\`` };
  return { addon: addon as CpuDecodeAddon };
}

/** One decode step on the cpu backend; q is the call's own copy (checked). */
export async function decodeOnCpu(addon: CpuDecodeAddon, p: DecodeProblem, q: Float32Array, cache: KvCache, threads: number | null): Promise<DecodeOutput> {
  const s = cache.storage;
  const sel = p.selection;
  const request = {
    heads: p.heads, m: p.m, scale: p.scale,
    windowLeft: p.windowLeft, windowRight: p.windowRight, globalTokens: p.globalTokens,
    rule: sel ? RULES[sel.mode] : 0, ruleValue: sel?.value ?? 0, minPages: sel?.minBlocks ?? 0, maxPages: sel?.maxBlocks ?? 0,
    estimate: ESTIMATES[sel?.estimate ?? 'mean'], shareAcrossGroup: sel?.shareAcrossGroup ?? false,
    topK: p.topK?.kind === 'count' ? p.topK.k : 0, topKRatio: p.topK?.kind === 'ratio' ? p.topK.ratio : 0,
    polyCoefficients: p.softmax.kind === 'poly' ? Float32Array.from(p.softmax.coefficients) : undefined,
    returnLse: p.returnLse, returnPages: p.returnPages,
    threads: threads ?? addon.cpuInfo().threads,
    lengths: Int32Array.from(p.sequences, (b) => s.lengths[b]),
    pageTables: p.sequences.map((b) => cache.pagesOf(b)),
  };
  const view = { keys: s.keys, values: s.values, min: s.min, max: s.max, sum: s.sum, sumSq: s.sumSq, kvHeads: cache.kvHeads, pageSize: cache.pageSize, headDim: cache.headDim };
  const r = await addon.cpuDecode(q, view, request);
  return {
    output: r.output,
    lse: r.lse ?? null,
    pages: r.pages ? r.pages.map((x) => Int32Array.from(x)) : null,
    stats: {
      density: r.allowedPairs > 0 ? r.keptPairs / r.allowedPairs : 0,
      keptPairs: r.keptPairs, allowedPairs: r.allowedPairs, pagesVisited: r.pagesVisited, pagesDense: r.pagesDense,
      pagesRead: r.pagesRead, pagesReadDense: r.pagesReadDense, emptyRows: r.emptyRows,
      droppedMass: { max: r.droppedMax, mean: r.droppedMean },
    },
  };
}
