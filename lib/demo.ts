/**
 * The demo behind `psa demo`: a synthetic long-context case with a planted needle, run dense
 * and sparse on the same backend, compared honestly (time, density, error, whether the needle
 * was found). `syntheticCase` is shared with the benchmark.
 */
import { attention } from './attention';
import type { AttentionOptions, AttentionResult, BackendName } from './types';

export interface DemoOptions {
  heads?: number;
  seq?: number;
  dim?: number;
  seed?: number;
  backend?: BackendName;
  /** Run each configuration once on a small case first, so no timed run pays for JIT warm-up. Default true. */
  warmup?: boolean;
}

export interface SyntheticCase {
  heads: number;
  seq: number;
  dim: number;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  /** First needle key position, and how many consecutive needle keys there are. */
  needleStart: number;
  needleKeys: number;
  /** Query rows (per head) whose queries contain the needle direction: the last `needleRows` rows. */
  needleRows: number;
}

export interface RunSummary {
  ms: number;
  density: number;
  blocksVisited: number;
  blocksDense: number;
}

export interface DemoReport {
  backend: string;
  heads: number;
  seq: number;
  dim: number;
  seed: number;
  blockSize: number;
  /** The sparse options used (JSON-friendly). */
  sparseOptions: AttentionOptions;
  needle: { keyStart: number; keys: number; keyBlock: number; queryRows: [number, number]; queryBlocks: number[] };
  dense: RunSummary;
  sparse: RunSummary;
  /** dense time / sparse time. */
  speedup: number;
  /** ||O_sparse - O_dense||_F / ||O_dense||_F over every row of every head. */
  relError: number;
  /** The same on the needle rows only. */
  relErrorNeedleRows: number;
  /** Per head: the needle's key block was selected for every needle query block. */
  needleSelected: boolean[];
  allHeadsSelected: boolean;
  /** Every needle key lies in the window of every needle row (short sequences): no selection is needed to see it. */
  needleInWindow: boolean;
  /** The same window and sinks without block selection, for comparison on the needle rows. */
  windowOnly: { ms: number; density: number; relError: number; relErrorNeedleRows: number };
}

export const DEMO_DEFAULTS = { heads: 8, seq: 4096, dim: 64, seed: 1 } as const;
const BLOCK = 64;
const WINDOW = 256;

/** mulberry32: small, fast, seeded. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(rand: () => number): () => number {
  return () => {
    const u = Math.max(rand(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
}

/**
 * A causal self-attention case, layout bhnd, batch 1. Each head's sequence is cut into
 * "topic" segments (128..384 tokens) drawn from a pool of 16 directions, so that queries
 * match some distant key blocks much better than others, as in real long contexts; keys,
 * queries and values are N(0, 1) plus that structure. The needle: `needleKeys` consecutive keys
 * at about 15% of the sequence (inside one key block) carry a strong direction u (4 channels),
 * and the queries of the last `needleRows` rows contain u, so those rows attend to the needle.
 */
export function syntheticCase(heads: number, seq: number, dim: number, seed = 1, needle = true, needleQueryRows = Math.min(BLOCK, seq)): SyntheticCase {
  const rand = prng(seed);
  const gauss = gaussian(rand);
  const n = heads * seq * dim;
  const q = new Float32Array(n);
  const k = new Float32Array(n);
  const v = new Float32Array(n);
  const topicCount = 16;
  const topicScale = 6; // norm of the topic part of q and k: same-topic pairs score about 36 * scale higher (4.5 at D = 64)
  const uChannels = Math.min(4, dim);
  const needleKeys = Math.min(4, seq);
  const needleRows = Math.min(needleQueryRows, seq);
  // Needle keys: 24 tokens into the key block at about 15% of the sequence (past the sinks).
  const needleBlock = Math.max(1, Math.floor((0.15 * seq) / BLOCK));
  const needleStart = Math.min(needleBlock * BLOCK + 24, Math.max(0, seq - needleRows - needleKeys));
  for (let h = 0; h < heads; h++) {
    const topics: Float64Array[] = [];
    for (let t = 0; t < topicCount; t++) {
      const dir = new Float64Array(dim);
      let norm = 0;
      for (let d = 0; d < dim; d++) norm += (dir[d] = gauss()) ** 2;
      norm = Math.sqrt(norm);
      for (let d = 0; d < dim; d++) dir[d] *= topicScale / norm;
      topics.push(dir);
    }
    let segEnd = 0;
    let topic = topics[0];
    const base = h * seq * dim;
    for (let i = 0; i < seq; i++) {
      if (i >= segEnd) {
        segEnd = i + 128 + Math.floor(rand() * 257);
        topic = topics[Math.floor(rand() * topicCount)];
      }
      const o = base + i * dim;
      for (let d = 0; d < dim; d++) {
        q[o + d] = gauss() + topic[d];
        k[o + d] = gauss() + topic[d];
        v[o + d] = gauss();
      }
    }
    if (!needle) continue;
    // u = (e_0 + ... + e_3) / 2: needle keys get 8 on each u channel, needle queries 6.
    for (let j = needleStart; j < needleStart + needleKeys; j++) {
      for (let d = 0; d < uChannels; d++) k[base + j * dim + d] = 8 + 0.25 * gauss();
    }
    for (let i = seq - needleRows; i < seq; i++) {
      for (let d = 0; d < uChannels; d++) q[base + i * dim + d] += 6;
    }
  }
  return { heads, seq, dim, q, k, v, needleStart, needleKeys, needleRows };
}

/** Relative Frobenius error of `a` against `ref` over rows [r0, r1) of every head. */
function relError(a: Float32Array, ref: Float32Array, heads: number, seq: number, dim: number, r0 = 0, r1 = seq): number {
  let num = 0;
  let den = 0;
  for (let h = 0; h < heads; h++) {
    for (let x = (h * seq + r0) * dim; x < (h * seq + r1) * dim; x++) {
      const d = a[x] - ref[x];
      num += d * d;
      den += ref[x] * ref[x];
    }
  }
  return den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
}

async function timed(c: SyntheticCase, options: AttentionOptions): Promise<{ r: AttentionResult<Float32Array>; ms: number }> {
  const t0 = process.hrtime.bigint();
  const r = await attention(c.q, c.k, c.v, options);
  return { r, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

function summary(r: AttentionResult<Float32Array>, ms: number): RunSummary {
  return { ms, density: r.stats.density, blocksVisited: r.stats.blocksVisited, blocksDense: r.stats.blocksDense };
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoReport> {
  const heads = options.heads ?? DEMO_DEFAULTS.heads;
  const seq = options.seq ?? DEMO_DEFAULTS.seq;
  const dim = options.dim ?? DEMO_DEFAULTS.dim;
  const seed = options.seed ?? DEMO_DEFAULTS.seed;
  const backend = options.backend ?? 'auto';
  const c = syntheticCase(heads, seq, dim, seed);
  const shape = { batch: 1, heads, seqQ: seq, headDim: dim };
  const common: AttentionOptions = { shape, causal: true, backend, blockSize: BLOCK };
  const sparseOptions: AttentionOptions = { window: WINDOW, globalTokens: 4, blocks: { progressive: 0.9 }, estimate: 'bound' };

  if (options.warmup !== false) {
    const w = syntheticCase(1, Math.min(seq, 512), dim, seed + 1);
    const wc = { ...common, shape: { ...shape, heads: 1, seqQ: w.seq } };
    for (const extra of [{}, sparseOptions, { window: WINDOW, globalTokens: 4 }]) await attention(w.q, w.k, w.v, { ...wc, ...extra });
  }
  const dense = await timed(c, common);
  const sparse = await timed(c, { ...common, ...sparseOptions });
  const windowOnly = await timed(c, { ...common, window: WINDOW, globalTokens: 4 });

  const r0 = seq - c.needleRows;
  const keyBlock = Math.floor(c.needleStart / BLOCK);
  const queryBlocks: number[] = [];
  for (let I = Math.floor(r0 / BLOCK); I * BLOCK < seq; I++) queryBlocks.push(I);
  const layout = sparse.r.layout!;
  const needleSelected: boolean[] = [];
  for (let h = 0; h < heads; h++) {
    needleSelected.push(queryBlocks.every((I) => layout.selectedBlocks(0, h, I).includes(keyBlock)));
  }
  const d = dense.r.output;
  return {
    backend: sparse.r.backend,
    heads, seq, dim, seed, blockSize: BLOCK,
    sparseOptions,
    needle: { keyStart: c.needleStart, keys: c.needleKeys, keyBlock, queryRows: [r0, seq - 1], queryBlocks },
    dense: summary(dense.r, dense.ms),
    sparse: summary(sparse.r, sparse.ms),
    speedup: dense.ms / sparse.ms,
    relError: relError(sparse.r.output, d, heads, seq, dim),
    relErrorNeedleRows: relError(sparse.r.output, d, heads, seq, dim, r0, seq),
    needleSelected,
    allHeadsSelected: needleSelected.every(Boolean),
    needleInWindow: r0 - (c.needleStart + c.needleKeys - 1) < WINDOW,
    windowOnly: {
      ms: windowOnly.ms,
      density: windowOnly.r.stats.density,
      relError: relError(windowOnly.r.output, d, heads, seq, dim),
      relErrorNeedleRows: relError(windowOnly.r.output, d, heads, seq, dim, r0, seq),
    },
  };
}

/** The report as plain text for the terminal. */
export function formatDemo(r: DemoReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const ms = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(0)} ms`);
  const e = (x: number) => x.toExponential(2);
  const selectedHeads = r.needleSelected.filter(Boolean).length;
  const lines = [
    `psa demo: synthetic long context, ${r.heads} heads x ${r.seq} tokens x head dim ${r.dim}, causal, seed ${r.seed}, backend ${r.backend}`,
    `  needle: keys ${r.needle.keyStart}..${r.needle.keyStart + r.needle.keys - 1} (key block ${r.needle.keyBlock}); ` +
      `queries ${r.needle.queryRows[0]}..${r.needle.queryRows[1]} (query block${r.needle.queryBlocks.length > 1 ? 's' : ''} ${r.needle.queryBlocks.join(', ')}) look for it`,
    `  sparse: window 256 + globalTokens 4 + blocks { progressive: 0.9 }, estimate 'bound', blockSize ${r.blockSize}`,
    '',
    `                      time       density   rel. error (all rows)   rel. error (needle rows)`,
    `  dense             ${ms(r.dense.ms).padStart(9)}   ${pct(r.dense.density).padStart(7)}   ${'(reference)'.padStart(21)}   ${'(reference)'.padStart(24)}`,
    `  sparse (PSA)      ${ms(r.sparse.ms).padStart(9)}   ${pct(r.sparse.density).padStart(7)}   ${e(r.relError).padStart(21)}   ${e(r.relErrorNeedleRows).padStart(24)}`,
    `  window+sinks only ${ms(r.windowOnly.ms).padStart(9)}   ${pct(r.windowOnly.density).padStart(7)}   ${e(r.windowOnly.relError).padStart(21)}   ${e(r.windowOnly.relErrorNeedleRows).padStart(24)}`,
    '',
    `  speedup sparse vs dense: ${r.speedup.toFixed(2)}x (tiles visited ${r.sparse.blocksVisited} of ${r.sparse.blocksDense}; times include block selection)`,
    `  needle key block selected for the needle query block(s): ${selectedHeads}/${r.heads} heads` +
      (r.allHeadsSelected ? '' : ` (missed in heads ${r.needleSelected.map((s, h) => (s ? -1 : h)).filter((h) => h >= 0).join(', ')})`) +
      (r.needleInWindow ? ' -- at this length the needle lies inside the window, so no selection is needed to see it' : ''),
  ];
  return lines.join('\n');
}
