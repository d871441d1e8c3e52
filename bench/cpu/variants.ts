/**
 * What the cpu benches share: seeded inputs, timed variants (onnxruntime-node's
 * MultiHeadAttention and psa calls on the same float32 arrays), and interleaved rounds, where
 * every round times each variant once in turn so that a machine getting busier slows them alike.
 */
import { InvalidArgumentError } from 'commander';
import { attention } from '../../lib';
import type { AttentionOptions } from '../../lib';
import { multiHeadAttentionModel } from './onnx-model';
import type { Ort, OrtSession } from './ort';

export interface Variant {
  name: string;
  /** One timed call; returns the output (for the accuracy check) and the density. */
  run(): Promise<{ output: Float32Array; density: number }>;
  release?(): Promise<void>;
}

export function intList(value: string): number[] {
  const list = value.split(',').map((s) => Number(s.trim()));
  if (!list.length || list.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new InvalidArgumentError('expected comma-separated integers >= 1');
  return list;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Seeded uniform values in [-1, 1) (mulberry32). */
export function random(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

export function relFrob(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** q, k, v of [1, seq, heads * headDim] (psa's `bnhd`), seeded. */
export function inputsOf(seq: number, heads: number, headDim: number): [Float32Array, Float32Array, Float32Array] {
  const n = heads * seq * headDim;
  return [random(n, 1), random(n, 2), random(n, 3)];
}

export async function ortVariant(name: string, ort: Ort, q: Float32Array, k: Float32Array, v: Float32Array, seq: number, heads: number, headDim: number,
  causal: boolean, threads: number): Promise<Variant> {
  const dims = [1, seq, heads * headDim];
  const session: OrtSession = await ort.InferenceSession.create(multiHeadAttentionModel(1, seq, heads, headDim, causal), {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
  const feeds = { q: new ort.Tensor('float32', q, dims), k: new ort.Tensor('float32', k, dims), v: new ort.Tensor('float32', v, dims) };
  return {
    name,
    run: async () => ({ output: (await session.run(feeds)).out.data, density: 1 }),
    release: () => session.release(),
  };
}

export function psaVariant(name: string, q: Float32Array, k: Float32Array, v: Float32Array, options: AttentionOptions): Variant {
  return {
    name,
    run: async () => {
      const r = await attention(q, k, v, options);
      return { output: r.output, density: r.stats.density };
    },
  };
}

/** One untimed call of each variant (its result kept), then `runs` interleaved rounds of timed calls (ms). */
export async function interleaved(variants: Variant[], runs: number, onRound?: (round: number) => void): Promise<{ first: { output: Float32Array; density: number }[]; times: number[][] }> {
  const first: { output: Float32Array; density: number }[] = [];
  for (const x of variants) first.push(await x.run());
  const times = variants.map(() => [] as number[]);
  for (let r = 0; r < runs; r++) {
    for (let i = 0; i < variants.length; i++) {
      const t0 = process.hrtime.bigint();
      await variants[i].run();
      times[i].push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    onRound?.(r);
  }
  return { first, times };
}
