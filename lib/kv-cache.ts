/**
 * KvCache: a paged key/value cache for decode, in the manner of paged attention. Pages of
 * `pageSize` tokens come from one pool shared by `batch` sequences of independent lengths, so
 * a service can append to some sequences, free one and reuse its pages (continuous batching).
 * Every page keeps, per kv head and channel, the min, max, sum and sum of squares of its keys,
 * updated at append: the metadata the page estimates read, so selection never rescans keys.
 *
 * The pages live on the host in float32 (`location: 'cpu'`), or on a device in float16 or
 * bfloat16 (`location: 'cuda' | 'cuda-emu'`, lib/backends/device-decode.ts): one pool of
 * device memory, the page table on the host, appends rounded on the device and the metadata
 * recomputed there. `append` copies its inputs before it returns and either appends
 * everything or nothing.
 */
import { types } from 'node:util';
import { DevicePool, DeviceLocation, MAX_PAGE_SIZE, PoolType } from './backends/device-decode';
import { DeviceStorage } from './backends/device-storage';
import { DisposedError, DtypeError, OptionError, OutOfMemoryError, ShapeError } from './errors';
import { checkValues } from './finite';
import type { NativeDeviceTensor } from './native';
import { checkTensorFinite, Tensor } from './tensor';
import { checkBoolean, checkInt, checkKeys, describe } from './validate';

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
  /** Storage type: 'float32' on the host; 'float16' (default) or 'bfloat16' on a device. */
  dtype?: 'float32' | 'float16' | 'bfloat16';
  /** Where the cache lives: 'cpu' (host memory, default), 'cuda' or 'cuda-emu' (device memory). */
  location?: 'cpu' | DeviceLocation;
  /** The CUDA device of a device cache; default 0. */
  device?: number;
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

/** Where every sequence's tokens are: kept on the host for both locations. */
interface Book {
  pageTables: Int32Array[]; // per sequence, page ids in order
  lengths: Int32Array;
  free: number[]; // free page ids, used as a stack
}

/** The pages of a host cache. */
interface HostPages {
  keys: Float32Array; // [page][head][slot][d]
  values: Float32Array;
  min: Float64Array; // [page][head][d]
  max: Float64Array;
  sum: Float64Array;
  sumSq: Float64Array;
}

type Storage = Book & HostPages;

type Resolved = { batch: number; kvHeads: number; headDim: number; capacity: number; pageSize: number; poolPages: number };

export class KvCache {
  readonly batch: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  readonly pageSize: number;
  readonly poolPages: number;
  readonly dtype: 'float32' | PoolType;
  readonly location: 'cpu' | DeviceLocation;
  #book: Book | null;
  /** A host cache's book and pages in one object (the same arrays as #book). */
  #host: Storage | null;
  #pool: DevicePool | null;
  /** Device work on this cache, in order: appends and decode steps never overlap. */
  #queue: Promise<unknown> = Promise.resolve();
  /** Steps reading the host pages in place (see reading), and the pages freed while they run. */
  #readers = 0;
  #deferred: number[] = [];

  private constructor(o: Resolved, pages: HostPages | DevicePool) {
    this.batch = o.batch;
    this.kvHeads = o.kvHeads;
    this.headDim = o.headDim;
    this.capacity = o.capacity;
    this.pageSize = o.pageSize;
    this.poolPages = o.poolPages;
    const P = o.poolPages;
    const perSequence = Math.ceil(o.capacity / o.pageSize);
    this.#book = {
      pageTables: Array.from({ length: o.batch }, () => new Int32Array(perSequence)),
      lengths: new Int32Array(o.batch),
      // Lowest page ids first, so a fresh cache fills the pool in order.
      free: Array.from({ length: P }, (_, i) => P - 1 - i),
    };
    this.#pool = pages instanceof DevicePool ? pages : null;
    this.#host = pages instanceof DevicePool ? null : Object.assign({}, this.#book, pages);
    this.dtype = pages instanceof DevicePool ? pages.dtype : 'float32';
    this.location = pages instanceof DevicePool ? pages.location : 'cpu';
  }

  static #hostPages(o: Resolved): HostPages {
    const floats = o.poolPages * o.kvHeads * o.pageSize * o.headDim;
    const meta = o.poolPages * o.kvHeads * o.headDim;
    return {
      keys: new Float32Array(floats),
      values: new Float32Array(floats),
      min: new Float64Array(meta),
      max: new Float64Array(meta),
      sum: new Float64Array(meta),
      sumSq: new Float64Array(meta),
    };
  }

  /** A cache with every option checked; ERR_OUT_OF_MEMORY when its storage cannot be allocated. */
  static async create(options: KvCacheOptions): Promise<KvCache> {
    if (typeof options !== 'object' || options === null) throw new OptionError('KvCache.create needs options { batch, kvHeads, headDim, capacity }', 'options');
    checkKeys('options', options, ['batch', 'kvHeads', 'headDim', 'capacity', 'pageSize', 'poolPages', 'dtype', 'location', 'device']);
    const shapeErr = (m: string, a: string) => new ShapeError(m, a);
    const batch = checkInt('batch', options.batch, 1, MAX_INT, shapeErr);
    const kvHeads = checkInt('kvHeads', options.kvHeads, 1, MAX_INT, shapeErr);
    const headDim = checkInt('headDim', options.headDim, 1, MAX_HEAD_DIM, shapeErr);
    const capacity = checkInt('capacity', options.capacity, 1, MAX_INT, shapeErr);
    const pageSize = options.pageSize === undefined ? DEFAULT_PAGE_SIZE : checkInt('pageSize', options.pageSize, 1, 4096);
    const full = batch * Math.ceil(capacity / pageSize);
    const poolPages = options.poolPages === undefined ? full : checkInt('poolPages', options.poolPages, 1, MAX_INT);
    const location = options.location ?? 'cpu';
    if (location !== 'cpu' && location !== 'cuda' && location !== 'cuda-emu') {
      throw new OptionError(`location must be 'cpu' (host memory), 'cuda' or 'cuda-emu' (device memory), got ${describe(options.location)}`, 'location');
    }
    const onDevice = location !== 'cpu';
    const dtype = options.dtype ?? (onDevice ? 'float16' : 'float32');
    if (onDevice ? dtype !== 'float16' && dtype !== 'bfloat16' : dtype !== 'float32') {
      throw new DtypeError(`dtype must be ${onDevice ? "'float16' or 'bfloat16' for a device cache" : "'float32' for a host cache"}, got ${describe(options.dtype)}`, 'dtype');
    }
    if (!onDevice && options.device !== undefined) throw new OptionError('device names the CUDA device of a device cache; a host cache takes none', 'device');
    const device = options.device === undefined ? 0 : checkInt('device', options.device, 0, MAX_INT);
    if (onDevice && pageSize > MAX_PAGE_SIZE) throw new OptionError(`pageSize must be at most ${MAX_PAGE_SIZE} for a device cache (the decode kernel stages a page in shared memory), got ${pageSize}`, 'pageSize');
    const floats = poolPages * kvHeads * pageSize * headDim;
    if (!(floats <= MAX_INT)) {
      throw new OutOfMemoryError(`a pool of ${poolPages} pages x ${kvHeads} heads x ${pageSize} tokens x ${headDim} channels holds ${floats} floats per array; the limit is ${MAX_INT}`, 'capacity');
    }
    const resolved = { batch, kvHeads, headDim, capacity, pageSize, poolPages };
    if (onDevice) return new KvCache(resolved, await DevicePool.create(location, dtype as PoolType, { kvHeads, pageSize, headDim }, poolPages, device));
    try {
      return new KvCache(resolved, KvCache.#hostPages(resolved));
    } catch (e) {
      if (e instanceof RangeError) throw new OutOfMemoryError(`could not allocate the cache's ${((floats * 8) / 2 ** 20).toFixed(0)} MiB of keys and values: ${e.message}`, 'capacity');
      throw e;
    }
  }

  get disposed(): boolean {
    return this.#book === null;
  }

  /** Tokens held per sequence (a copy). */
  get lengths(): number[] {
    return Array.from(this.book.lengths);
  }

  /** Pages in use over all sequences. */
  get pagesUsed(): number {
    return this.poolPages - this.book.free.length;
  }

  /**
   * Append tokens: `k` and `v` are `[sequences, kvHeads, n, headDim]` (bhnd), n tokens to each
   * named sequence. Checked whole before anything is written: a wrong shape is ERR_SHAPE, a
   * sequence past its capacity or a pool too small is ERR_OUT_OF_MEMORY, and nothing is
   * appended in either case.
   */
  async append(k: Float32Array | Tensor, v: Float32Array | Tensor, options: AppendOptions = {}): Promise<void> {
    const book = this.book;
    if (typeof options !== 'object' || options === null) throw new OptionError('append options must be an object', 'options');
    checkKeys('options', options, ['sequences', 'checkFinite']);
    const sequences = this.#sequences(options.sequences);
    const n = this.#tokenCount(k, v, sequences.length);
    const checkFinite = checkBoolean('checkFinite', options.checkFinite, true);
    if (this.#pool) return this.#appendOnDevice(this.#pool, k, v, sequences, n, checkFinite);
    const pagesNeeded = this.#checkRoom(book, sequences, n);
    const kd = k as Float32Array;
    const vd = v as Float32Array;
    if (checkFinite) {
      checkValues('k', kd, 'float32');
      checkValues('v', vd, 'float32');
    }
    if (pagesNeeded > book.free.length) {
      throw new OutOfMemoryError(`the append needs ${pagesNeeded} new pages; the pool has ${book.free.length} free of ${this.poolPages}`, 'k');
    }
    // Everything is checked: write.
    const s = this.storage;
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
            const x = kd[src + d];
            s.keys[dst + d] = x;
            s.values[dst + d] = vd[src + d];
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

  /** n, the tokens per sequence of k and v ([sequences, kvHeads, n, headDim]); ERR_SHAPE / ERR_DTYPE otherwise. */
  #tokenCount(k: Float32Array | Tensor, v: Float32Array | Tensor, sequences: number): number {
    const row = sequences * this.kvHeads * this.headDim;
    const tensors = k instanceof Tensor || v instanceof Tensor;
    if (tensors) {
      if (!this.#pool) throw new DtypeError('a host cache appends Float32Arrays', k instanceof Tensor ? 'k' : 'v');
      for (const [name, x] of [['k', k], ['v', v]] as const) {
        if (!(x instanceof Tensor)) throw new DtypeError(`${name} must be a Tensor like ${name === 'k' ? 'v' : 'k'}, got ${describe(x)}`, name);
        const st = x.storage; // ERR_DISPOSED when disposed
        if (st instanceof DeviceStorage && st.location !== this.location) throw new OptionError(`${name} is on '${st.location}'; the cache is on '${this.location}'`, name);
        const [s, h, , d] = x.dims;
        if (s !== sequences || h !== this.kvHeads || d !== this.headDim) throw new ShapeError(`${name} dims [${x.dims}] must be [${sequences}, ${this.kvHeads}, n, ${this.headDim}]`, name);
      }
      const kt = k as Tensor;
      const vt = v as Tensor;
      if (vt.dims[2] !== kt.dims[2]) throw new ShapeError(`v holds ${vt.dims[2]} tokens, k ${kt.dims[2]}: they must match`, 'v');
      return kt.dims[2];
    }
    for (const [name, x] of [['k', k], ['v', v]] as const) {
      if (!types.isFloat32Array(x)) throw new DtypeError(`${name} must be a Float32Array${this.#pool ? ' or a Tensor' : ''}, got ${describe(x)}`, name);
    }
    const kd = k as Float32Array;
    const n = kd.length / row;
    if (!Number.isInteger(n) || n < 1) {
      throw new ShapeError(`k holds ${kd.length} floats: it must be [${sequences}, ${this.kvHeads}, n, ${this.headDim}] with n >= 1 tokens${kd.length === 0 ? ' (was its buffer transferred?)' : ''}`, 'k');
    }
    if ((v as Float32Array).length !== kd.length) throw new ShapeError(`v holds ${(v as Float32Array).length} floats, k ${kd.length}: they must match`, 'v');
    return n;
  }

  /**
   * A device append: the inputs taken now (host arrays copied, device tensors shared), the
   * work queued behind the cache's earlier device work; pages are taken from the pool and the
   * lengths moved only once the device has written the tokens.
   */
  #appendOnDevice(pool: DevicePool, k: Float32Array | Tensor, v: Float32Array | Tensor, sequences: number[], n: number, checkFinite: boolean): Promise<void> {
    const take = (x: Float32Array | Tensor): { host: Float32Array } | { device: NativeDeviceTensor } | { tensor: Tensor } => {
      if (!(x instanceof Tensor)) return { host: x.slice() };
      const st = x.storage;
      return st instanceof DeviceStorage ? { device: st.native.share() } : { tensor: Tensor.fromFloat32(x.data.slice(), x.dims) };
    };
    const inputs = [take(k), take(v)];
    const release = () => {
      for (const x of inputs) if ('device' in x) x.device.dispose();
    };
    return this.#enqueue(async () => {
      const made: NativeDeviceTensor[] = [];
      try {
        if (checkFinite) {
          await Promise.all(inputs.map((x, i) => {
            const name = i === 0 ? 'k' : 'v';
            if ('host' in x) return checkValues(name, x.host, this.dtype);
            if ('tensor' in x) return checkTensorFinite(name, x.tensor, this.dtype);
            return checkTensorFinite(name, new Tensor(new DeviceStorage(pool.location, x.device), [1, 1, 1, x.device.count]), this.dtype);
          }));
        }
        const book = this.book;
        const plan = this.#planAppend(book, sequences, n);
        const handles = await Promise.all(inputs.map(async (x) => {
          if ('device' in x) return x.device;
          const t = await pool.upload('host' in x ? x.host : x.tensor.data);
          made.push(t);
          return t;
        }));
        await pool.append(handles[0], handles[1], plan.append);
        plan.commit();
      } finally {
        for (const t of made) t.dispose();
        release();
      }
    });
  }

  /** The new pages n more tokens of each sequence need; ERR_OUT_OF_MEMORY past a capacity. */
  #checkRoom(book: Book, sequences: number[], n: number): number {
    let pagesNeeded = 0;
    for (const q of sequences) {
      const len = book.lengths[q];
      if (len + n > this.capacity) {
        throw new OutOfMemoryError(`sequence ${q} holds ${len} tokens; ${n} more would pass its capacity of ${this.capacity}`, 'k');
      }
      pagesNeeded += Math.ceil((len + n) / this.pageSize) - Math.ceil(len / this.pageSize);
    }
    return pagesNeeded;
  }

  /** Where n tokens of each sequence go, checked against the capacity and the free pages; commit() takes them. */
  #planAppend(book: Book, sequences: number[], n: number) {
    const pagesNeeded = this.#checkRoom(book, sequences, n);
    if (pagesNeeded > book.free.length) {
      throw new OutOfMemoryError(`the append needs ${pagesNeeded} new pages; the pool has ${book.free.length} free of ${this.poolPages}`, 'k');
    }
    const ps = this.pageSize;
    let taken = 0;
    const newPages: number[][] = [];
    const slots = new Int32Array(sequences.length * n);
    const touched: number[] = [];
    const touchedKeys: number[] = [];
    sequences.forEach((q, si) => {
      const len = book.lengths[q];
      const fresh: number[] = [];
      const pageAt = (J: number) => (J * ps < len ? book.pageTables[q][J] : fresh[J - Math.ceil(len / ps)]);
      for (let t = 0; t < n; t++) {
        const pos = len + t;
        if (pos % ps === 0) fresh.push(book.free[book.free.length - 1 - taken++]);
        slots[si * n + t] = pageAt(Math.floor(pos / ps)) * ps + (pos % ps);
      }
      for (let J = Math.floor(len / ps); J * ps < len + n; J++) {
        touched.push(pageAt(J));
        touchedKeys.push(Math.min(ps, len + n - J * ps));
      }
      newPages.push(fresh);
    });
    return {
      append: { sequences: sequences.length, n, slots, touched: Int32Array.from(touched), touchedKeys: Int32Array.from(touchedKeys) },
      commit: () => {
        book.free.length -= taken;
        sequences.forEach((q, si) => {
          const first = Math.ceil(book.lengths[q] / ps);
          newPages[si].forEach((page, i) => (book.pageTables[q][first + i] = page));
          book.lengths[q] += n;
        });
      },
    };
  }

  /** Runs `work` after the cache's earlier device work, whatever became of it. */
  #enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work, work);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** @internal A decode step on the device pool, in order with the appends. */
  onDevice<T>(step: (pool: DevicePool) => Promise<T>): Promise<T> {
    const pool = this.#pool;
    if (this.#book === null) return Promise.reject(new DisposedError('KvCache', 'cache'));
    if (!pool) return Promise.reject(new OptionError('the cache is in host memory', 'cache'));
    return this.#enqueue(() => step(pool));
  }

  /** Empty one sequence and return its pages to the pool. */
  free(sequence: number): void {
    const s = this.book;
    const [q] = this.#sequences([sequence], 'sequence');
    const pages = Math.ceil(s.lengths[q] / this.pageSize);
    // While a cpu decode step reads the host pages in place, freed pages wait for it to end.
    const to = this.#readers > 0 ? this.#deferred : s.free;
    for (let i = pages - 1; i >= 0; i--) to.push(s.pageTables[q][i]);
    s.lengths[q] = 0;
  }

  /**
   * @internal Runs a step that reads this host cache's pages in place off the main thread (the
   * cpu decode). An append meanwhile writes only slots past the lengths the step took and the
   * metadata of partial last pages, which the step copied; pages freed meanwhile go back to the
   * pool only once no such step runs, so no append can overwrite what a step reads.
   */
  async reading<T>(step: () => Promise<T>): Promise<T> {
    this.#readers++;
    try {
      return await step();
    } finally {
      if (--this.#readers === 0 && this.#deferred.length > 0) {
        this.#book?.free.push(...this.#deferred);
        this.#deferred = [];
      }
    }
  }

  /** Empty every sequence. */
  reset(): void {
    for (let q = 0; q < this.batch; q++) this.free(q);
  }

  dispose(): void {
    this.#book = null;
    this.#host = null;
    // Work already queued holds its own shares of the pool's memory.
    this.#pool?.dispose();
    this.#pool = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The page ids of one sequence, in order (a view: do not keep it across appends). */
  pagesOf(sequence: number): Int32Array {
    const s = this.book;
    return s.pageTables[sequence].subarray(0, Math.ceil(s.lengths[sequence] / this.pageSize));
  }

  /** Key channel d of token `slot` of (page, kv head) starts at keyOffset(page, head, slot). */
  keyOffset(page: number, head: number, slot: number): number {
    return ((page * this.kvHeads + head) * this.pageSize + slot) * this.headDim;
  }

  /** @internal The page table and lengths (read only). */
  get book(): Book {
    if (this.#book === null) throw new DisposedError('KvCache', 'cache');
    return this.#book;
  }

  /** @internal The pages of a host cache with its book, for the reference (read only). */
  get storage(): Storage {
    this.book; // ERR_DISPOSED when disposed
    if (this.#host === null) throw new OptionError(`the cache is on '${this.location}': its pages are in device memory`, 'cache');
    return this.#host;
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
