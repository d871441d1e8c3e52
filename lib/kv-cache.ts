/**
 * KvCache: a paged key/value cache for decode, in the manner of paged attention. Pages of
 * `pageSize` tokens come from one pool shared by `batch` sequences of independent lengths, so
 * a service can append to some sequences, free one and reuse its pages (continuous batching).
 * Every page keeps, per kv head and channel, the min, max, sum and sum of squares of its keys,
 * updated at append: the metadata the page estimates read, so selection never rescans keys.
 *
 * This version stores float32 on the host (`location: 'cpu'`). `append` copies its inputs
 * before it returns and either appends everything or nothing.
 */
import { types } from 'node:util';
import { DisposedError, DtypeError, OptionError, OutOfMemoryError, ShapeError } from './errors';
import { checkValues } from './finite';
import { checkBoolean, checkInt, checkKeys, checkOneOf, describe } from './validate';

// Node 20 may lack Symbol.dispose; TypeScript's `using` looks it up at run time.
if (!(Symbol as { dispose?: symbol }).dispose) (Symbol as { dispose?: symbol }).dispose = Symbol.for('nodejs.dispose');

export interface KvCacheOptions {
  /** Sequences the cache holds. */
  batch: number;
  kvHeads: number;
  /** 1..256. */
  headDim: number;
  /** Most tokens one sequence may hold. */
  capacity: number;
  /** Tokens per page; default 32 (docs/decode.md says why). */
  pageSize?: number;
  /** Pages in the pool; default enough for every sequence at capacity. Fewer overcommits: appends fail with ERR_OUT_OF_MEMORY when the pool runs dry. */
  poolPages?: number;
  /** Storage type: 'float32' on the host. */
  dtype?: 'float32';
  /** Where the cache lives: 'cpu' (host memory). */
  location?: 'cpu';
}

export interface AppendOptions {
  /** The sequences the tokens go to, in the order of k's and v's first dimension; default every sequence in order. */
  sequences?: readonly number[];
  /** Reject NaN or infinite values (ERR_VALUE); default true. */
  checkFinite?: boolean;
}

export const DEFAULT_PAGE_SIZE = 32;
const MAX_HEAD_DIM = 256;
const MAX_INT = 2 ** 31 - 1;

/** Page metadata of one (page, kv head): per channel min, max, sum and sum of squares of its keys. */
export interface PageStats {
  min: Float64Array;
  max: Float64Array;
  sum: Float64Array;
  sumSq: Float64Array;
}

interface Storage {
  keys: Float32Array; // [page][head][slot][d]
  values: Float32Array;
  min: Float64Array; // [page][head][d]
  max: Float64Array;
  sum: Float64Array;
  sumSq: Float64Array;
  pageTables: Int32Array[]; // per sequence, page ids in order
  lengths: Int32Array;
  free: number[]; // free page ids, used as a stack
}

export class KvCache {
  readonly batch: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  readonly pageSize: number;
  readonly poolPages: number;
  readonly dtype = 'float32' as const;
  readonly location = 'cpu' as const;
  #s: Storage | null;

  private constructor(o: Required<Omit<KvCacheOptions, 'dtype' | 'location'>>) {
    this.batch = o.batch;
    this.kvHeads = o.kvHeads;
    this.headDim = o.headDim;
    this.capacity = o.capacity;
    this.pageSize = o.pageSize;
    this.poolPages = o.poolPages;
    const P = o.poolPages;
    const pageFloats = o.kvHeads * o.pageSize * o.headDim;
    const meta = P * o.kvHeads * o.headDim;
    const perSequence = Math.ceil(o.capacity / o.pageSize);
    this.#s = {
      keys: new Float32Array(P * pageFloats),
      values: new Float32Array(P * pageFloats),
      min: new Float64Array(meta),
      max: new Float64Array(meta),
      sum: new Float64Array(meta),
      sumSq: new Float64Array(meta),
      pageTables: Array.from({ length: o.batch }, () => new Int32Array(perSequence)),
      lengths: new Int32Array(o.batch),
      // Lowest page ids first, so a fresh cache fills the pool in order.
      free: Array.from({ length: P }, (_, i) => P - 1 - i),
    };
  }

  /** A cache with every option checked; ERR_OUT_OF_MEMORY when its storage cannot be allocated. */
  static async create(options: KvCacheOptions): Promise<KvCache> {
    if (typeof options !== 'object' || options === null) throw new OptionError('KvCache.create needs options { batch, kvHeads, headDim, capacity }', 'options');
    checkKeys('options', options, ['batch', 'kvHeads', 'headDim', 'capacity', 'pageSize', 'poolPages', 'dtype', 'location']);
    const shapeErr = (m: string, a: string) => new ShapeError(m, a);
    const batch = checkInt('batch', options.batch, 1, MAX_INT, shapeErr);
    const kvHeads = checkInt('kvHeads', options.kvHeads, 1, MAX_INT, shapeErr);
    const headDim = checkInt('headDim', options.headDim, 1, MAX_HEAD_DIM, shapeErr);
    const capacity = checkInt('capacity', options.capacity, 1, MAX_INT, shapeErr);
    const pageSize = options.pageSize === undefined ? DEFAULT_PAGE_SIZE : checkInt('pageSize', options.pageSize, 1, 4096);
    const full = batch * Math.ceil(capacity / pageSize);
    const poolPages = options.poolPages === undefined ? full : checkInt('poolPages', options.poolPages, 1, MAX_INT);
    checkOneOf('dtype', options.dtype, ['float32'], 'float32');
    if (options.location !== undefined && options.location !== 'cpu') {
      throw new OptionError(`location must be 'cpu' (a cache in host memory), got ${describe(options.location)}`, 'location');
    }
    const floats = poolPages * kvHeads * pageSize * headDim;
    if (!(floats <= MAX_INT)) {
      throw new OutOfMemoryError(`a pool of ${poolPages} pages x ${kvHeads} heads x ${pageSize} tokens x ${headDim} channels holds ${floats} floats per array; the limit is ${MAX_INT}`, 'capacity');
    }
    try {
      return new KvCache({ batch, kvHeads, headDim, capacity, pageSize, poolPages });
    } catch (e) {
      if (e instanceof RangeError) throw new OutOfMemoryError(`could not allocate the cache's ${((floats * 8) / 2 ** 20).toFixed(0)} MiB of keys and values: ${e.message}`, 'capacity');
      throw e;
    }
  }

  get disposed(): boolean {
    return this.#s === null;
  }

  /** Tokens held per sequence (a copy). */
  get lengths(): number[] {
    return Array.from(this.storage.lengths);
  }

  /** Pages in use over all sequences. */
  get pagesUsed(): number {
    return this.poolPages - this.storage.free.length;
  }

  /**
   * Append tokens: `k` and `v` are `[sequences, kvHeads, n, headDim]` (bhnd), n tokens to each
   * named sequence. Checked whole before anything is written: a wrong shape is ERR_SHAPE, a
   * sequence past its capacity or a pool too small is ERR_OUT_OF_MEMORY, and nothing is
   * appended in either case.
   */
  async append(k: Float32Array, v: Float32Array, options: AppendOptions = {}): Promise<void> {
    const s = this.storage;
    if (typeof options !== 'object' || options === null) throw new OptionError('append options must be an object', 'options');
    checkKeys('options', options, ['sequences', 'checkFinite']);
    const sequences = this.#sequences(options.sequences);
    for (const [name, x] of [['k', k], ['v', v]] as const) {
      if (!types.isFloat32Array(x)) throw new DtypeError(`${name} must be a Float32Array, got ${describe(x)}`, name);
    }
    const row = sequences.length * this.kvHeads * this.headDim;
    const n = k.length / row;
    if (!Number.isInteger(n) || n < 1) {
      throw new ShapeError(`k holds ${k.length} floats: it must be [${sequences.length}, ${this.kvHeads}, n, ${this.headDim}] with n >= 1 tokens${k.length === 0 ? ' (was its buffer transferred?)' : ''}`, 'k');
    }
    if (v.length !== k.length) throw new ShapeError(`v holds ${v.length} floats, k ${k.length}: they must match`, 'v');
    if (checkBoolean('checkFinite', options.checkFinite, true)) {
      checkValues('k', k, 'float32');
      checkValues('v', v, 'float32');
    }
    let pagesNeeded = 0;
    for (const q of sequences) {
      const len = s.lengths[q];
      if (len + n > this.capacity) {
        throw new OutOfMemoryError(`sequence ${q} holds ${len} tokens; ${n} more would pass its capacity of ${this.capacity}`, 'k');
      }
      pagesNeeded += Math.ceil((len + n) / this.pageSize) - Math.ceil(len / this.pageSize);
    }
    if (pagesNeeded > s.free.length) {
      throw new OutOfMemoryError(`the append needs ${pagesNeeded} new pages; the pool has ${s.free.length} free of ${this.poolPages}`, 'k');
    }
    // Everything is checked: write.
    const { kvHeads: H, headDim: D, pageSize: ps } = this;
    sequences.forEach((q, si) => {
      const table = s.pageTables[q];
      const len = s.lengths[q];
      for (let t = 0; t < n; t++) {
        const pos = len + t;
        const slot = pos % ps;
        if (slot === 0) table[pos / ps] = s.free.pop()!;
        const page = table[Math.floor(pos / ps)];
        for (let h = 0; h < H; h++) {
          const src = ((si * H + h) * n + t) * D;
          const dst = ((page * H + h) * ps + slot) * D;
          const meta = (page * H + h) * D;
          for (let d = 0; d < D; d++) {
            const x = k[src + d];
            s.keys[dst + d] = x;
            s.values[dst + d] = v[src + d];
            if (slot === 0) {
              s.min[meta + d] = x;
              s.max[meta + d] = x;
              s.sum[meta + d] = x;
              s.sumSq[meta + d] = x * x;
            } else {
              if (x < s.min[meta + d]) s.min[meta + d] = x;
              if (x > s.max[meta + d]) s.max[meta + d] = x;
              s.sum[meta + d] += x;
              s.sumSq[meta + d] += x * x;
            }
          }
        }
      }
      s.lengths[q] = len + n;
    });
  }

  /** Empty one sequence and return its pages to the pool. */
  free(sequence: number): void {
    const s = this.storage;
    const [q] = this.#sequences([sequence], 'sequence');
    const pages = Math.ceil(s.lengths[q] / this.pageSize);
    for (let i = pages - 1; i >= 0; i--) s.free.push(s.pageTables[q][i]);
    s.lengths[q] = 0;
  }

  /** Empty every sequence. */
  reset(): void {
    for (let q = 0; q < this.batch; q++) this.free(q);
  }

  dispose(): void {
    this.#s = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The page ids of one sequence, in order (a view: do not keep it across appends). */
  pagesOf(sequence: number): Int32Array {
    const s = this.storage;
    return s.pageTables[sequence].subarray(0, Math.ceil(s.lengths[sequence] / this.pageSize));
  }

  /** Key channel d of token `slot` of (page, kv head) starts at keyOffset(page, head, slot). */
  keyOffset(page: number, head: number, slot: number): number {
    return ((page * this.kvHeads + head) * this.pageSize + slot) * this.headDim;
  }

  /** @internal The storage arrays, for the decode backends (read only). */
  get storage(): Storage {
    if (this.#s === null) throw new DisposedError('KvCache', 'cache');
    return this.#s;
  }

  #sequences(list: readonly number[] | undefined, argument = 'options.sequences'): number[] {
    if (list === undefined) return Array.from({ length: this.batch }, (_, i) => i);
    if (!Array.isArray(list) || list.length === 0) throw new OptionError(`${argument} must be a non-empty array of sequence indices`, argument);
    const seen = new Set<number>();
    for (const q of list) {
      checkInt(argument, q, 0, this.batch - 1);
      if (seen.has(q)) throw new OptionError(`${argument} names sequence ${q} twice`, argument);
      seen.add(q);
    }
    return [...list];
  }
}
