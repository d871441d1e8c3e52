/** Seeded test data: a tiny mulberry32 PRNG and input generators. */

/** mulberry32: a 32-bit seeded PRNG giving floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n uniform values in [-amp, amp), as float32. */
export function randomArray(n: number, seed: number, amp = 1): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * amp;
  return out;
}

/** n small integers in [-m, m], as float32 (exact in every precision: scores tie exactly). */
export function randomIntArray(n: number, seed: number, m = 2): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * (2 * m + 1)) - m;
  return out;
}

export interface ShapeLike {
  batch: number;
  heads: number;
  kvHeads?: number;
  seqQ: number;
  seqK?: number;
  headDim: number;
  layout?: 'bhnd' | 'bnhd';
}

export function sizes(s: ShapeLike): { q: number; kv: number } {
  const Hkv = s.kvHeads ?? s.heads;
  const Nk = s.seqK ?? s.seqQ;
  return { q: s.batch * s.heads * s.seqQ * s.headDim, kv: s.batch * Hkv * Nk * s.headDim };
}

/** Random q, k, v for a shape, from one seed. `amp` scales q and k (larger: peakier softmax). */
export function randomQKV(s: ShapeLike, seed: number, amp = 1): { q: Float32Array; k: Float32Array; v: Float32Array } {
  const n = sizes(s);
  return {
    q: randomArray(n.q, seed * 3 + 1, amp),
    k: randomArray(n.kv, seed * 3 + 2, amp),
    v: randomArray(n.kv, seed * 3 + 3, 1),
  };
}
