/**
 * BlockLayout: which key blocks each (batch, head, query block) visits, in CSR form, with the
 * mask rule needed inside partial blocks. Built by `buildBlockLayout` (from q and k, on any
 * backend) or by `BlockLayout.fromSelection` (from block lists you choose); passed back to
 * `attention` through `options.layout`, like FlexAttention's BlockMask.
 */
import { OptionError, ShapeError } from './errors';
import { causalLimit, Coverage, MaskSpec, tileCoverage } from './mask';

/** Bit flags per layout entry. */
export const BLOCK_SELECTED = 1; // chosen by selection: every causally allowed key of the block is allowed
export const BLOCK_FULL = 2; // every (row, key) of the tile is allowed: no element mask needed

export interface LayoutGeometry {
  batch: number;
  heads: number;
  seqQ: number;
  seqK: number;
  /** Keys per key block (and, unless queryBlockSize says otherwise, queries per query block). */
  blockSize: number;
  /** Queries per query block (a layout row): default blockSize; 1 selects per query row. */
  queryBlockSize?: number;
  causal: boolean;
  /** [left, right] or null for no window. */
  window: readonly [number, number] | null;
  globalTokens: number;
}

export interface LayoutEntryList {
  /** Key-block indices, ascending. */
  blocks: Int32Array;
  /** Per block: no element mask needed. */
  full: boolean[];
  /** Per block: chosen by selection (rather than visited for the window or sinks alone). */
  selected: boolean[];
}

export class BlockLayout {
  readonly batch: number;
  readonly heads: number;
  readonly seqQ: number;
  readonly seqK: number;
  readonly blockSize: number;
  readonly queryBlockSize: number;
  readonly causal: boolean;
  readonly window: readonly [number, number] | null;
  readonly globalTokens: number;
  readonly numQueryBlocks: number;
  readonly numKeyBlocks: number;
  /** CSR row pointers, length batch*heads*numQueryBlocks + 1; row r = (b*heads + h)*numQueryBlocks + I. */
  readonly offsets: Int32Array;
  /** Key-block index of each entry, ascending within a row. */
  readonly indices: Int32Array;
  /** BLOCK_SELECTED | BLOCK_FULL bits of each entry. */
  readonly flags: Uint8Array;

  /** Use `buildBlockLayout` or `BlockLayout.fromSelection`; this constructor trusts its arguments. */
  constructor(geometry: LayoutGeometry, offsets: Int32Array, indices: Int32Array, flags: Uint8Array) {
    this.batch = geometry.batch;
    this.heads = geometry.heads;
    this.seqQ = geometry.seqQ;
    this.seqK = geometry.seqK;
    this.blockSize = geometry.blockSize;
    this.queryBlockSize = geometry.queryBlockSize ?? geometry.blockSize;
    this.causal = geometry.causal;
    this.window = geometry.window ? [geometry.window[0], geometry.window[1]] : null;
    this.globalTokens = geometry.globalTokens;
    this.numQueryBlocks = Math.ceil(geometry.seqQ / this.queryBlockSize);
    this.numKeyBlocks = Math.ceil(geometry.seqK / geometry.blockSize);
    this.offsets = offsets;
    this.indices = indices;
    this.flags = flags;
    Object.freeze(this);
  }

  get geometry(): LayoutGeometry {
    return {
      batch: this.batch, heads: this.heads, seqQ: this.seqQ, seqK: this.seqK, blockSize: this.blockSize, queryBlockSize: this.queryBlockSize,
      causal: this.causal, window: this.window, globalTokens: this.globalTokens,
    };
  }

  get maskSpec(): MaskSpec {
    return maskSpecOf(this.geometry);
  }

  /** Total entries (tiles visited over all batches and heads). */
  get size(): number {
    return this.indices.length;
  }

  rowIndex(b: number, h: number, queryBlock: number): number {
    const ok = (x: number, n: number) => Number.isInteger(x) && x >= 0 && x < n;
    if (!(ok(b, this.batch) && ok(h, this.heads) && ok(queryBlock, this.numQueryBlocks))) {
      throw new ShapeError(`no layout row (${b}, ${h}, ${queryBlock}) in a layout of ${this.batch} x ${this.heads} x ${this.numQueryBlocks}`, 'row');
    }
    return (b * this.heads + h) * this.numQueryBlocks + queryBlock;
  }

  /** The key blocks visited by one (batch, head, query block), with their flags. */
  blocksFor(b: number, h: number, queryBlock: number): LayoutEntryList {
    const r = this.rowIndex(b, h, queryBlock);
    const lo = this.offsets[r];
    const hi = this.offsets[r + 1];
    const full: boolean[] = [];
    const selected: boolean[] = [];
    for (let e = lo; e < hi; e++) {
      full.push((this.flags[e] & BLOCK_FULL) !== 0);
      selected.push((this.flags[e] & BLOCK_SELECTED) !== 0);
    }
    return { blocks: this.indices.slice(lo, hi), full, selected };
  }

  /** Selected key blocks (excluding blocks visited only for the window or sinks). */
  selectedBlocks(b: number, h: number, queryBlock: number): number[] {
    const r = this.rowIndex(b, h, queryBlock);
    const out: number[] = [];
    for (let e = this.offsets[r]; e < this.offsets[r + 1]; e++) if (this.flags[e] & BLOCK_SELECTED) out.push(this.indices[e]);
    return out;
  }

  /**
   * A layout from your own block choice. `select(b, h, I)` returns the key blocks to add to
   * query block I on top of the window and sinks of `geometry`; out-of-range or causally empty
   * blocks are rejected so that a layout never lists a tile with nothing to compute.
   */
  static fromSelection(geometry: LayoutGeometry, select: (b: number, h: number, queryBlock: number) => Iterable<number>): BlockLayout {
    validateGeometry(geometry);
    const spec = maskSpecOf(geometry);
    const { batch, heads, seqQ, seqK, blockSize } = geometry;
    const qbs = geometry.queryBlockSize ?? blockSize;
    const nQB = Math.ceil(seqQ / qbs);
    const nKB = Math.ceil(seqK / blockSize);
    // Window/sink coverage and causal coverage depend only on (I, J): compute once per I.
    const wsCov = new Uint8Array(nQB * nKB);
    const causalCov = new Uint8Array(nQB * nKB);
    for (let I = 0; I < nQB; I++) {
      const i0 = I * qbs;
      const i1 = Math.min(seqQ, i0 + qbs) - 1;
      for (let J = 0; J < nKB; J++) {
        const j0 = J * blockSize;
        const j1 = Math.min(seqK, j0 + blockSize) - 1;
        wsCov[I * nKB + J] = tileCoverage(spec, i0, i1, j0, j1, false);
        causalCov[I * nKB + J] = tileCoverage(spec, i0, i1, j0, j1, true);
      }
    }
    const offsets = new Int32Array(batch * heads * nQB + 1);
    const indices: number[] = [];
    const flags: number[] = [];
    const chosen = new Uint8Array(nKB);
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        for (let I = 0; I < nQB; I++) {
          chosen.fill(0);
          for (const J of select(b, h, I)) {
            if (!Number.isInteger(J) || J < 0 || J >= nKB) {
              throw new OptionError(`selected key block ${J} for (${b}, ${h}, ${I}) is outside 0..${nKB - 1}`, 'layout');
            }
            if (causalCov[I * nKB + J] === Coverage.None) {
              throw new OptionError(`selected key block ${J} for query block ${I} holds no causally allowed key`, 'layout');
            }
            chosen[J] = 1;
          }
          for (let J = 0; J < nKB; J++) {
            const cov = chosen[J] ? causalCov[I * nKB + J] : wsCov[I * nKB + J];
            if (cov === Coverage.None) continue;
            indices.push(J);
            flags.push((chosen[J] ? BLOCK_SELECTED : 0) | (cov === Coverage.Full ? BLOCK_FULL : 0));
          }
          offsets[(b * heads + h) * nQB + I + 1] = indices.length;
        }
      }
    }
    return new BlockLayout(geometry, offsets, Int32Array.from(indices), Uint8Array.from(flags));
  }

  /** Plain-object form (typed arrays as arrays), for logging or storage; `BlockLayout.fromJSON` reads it back. */
  toJSON(): object {
    return { ...this.geometry, offsets: Array.from(this.offsets), indices: Array.from(this.indices), flags: Array.from(this.flags) };
  }

  /**
   * Read back `toJSON()` output, which may come from anywhere: the structure and sizes are
   * checked first (cheaply, before any work that grows with the claimed geometry), then the
   * content, as for any layout passed to `attention`. Every failure is a PsaError.
   */
  static fromJSON(json: { offsets: number[]; indices: number[]; flags: number[] } & LayoutGeometry): BlockLayout {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new OptionError('layout JSON must be an object from BlockLayout.toJSON()', 'layout');
    validateGeometry(json);
    const rows = json.batch * json.heads * Math.ceil(json.seqQ / (json.queryBlockSize ?? json.blockSize));
    const arrays = { offsets: json.offsets, indices: json.indices, flags: json.flags };
    for (const [key, a] of Object.entries(arrays)) {
      if (!Array.isArray(a)) throw new OptionError(`layout JSON ${key} must be an array of integers`, `layout.${key}`);
    }
    if (arrays.offsets.length !== rows + 1) {
      throw new OptionError(`layout JSON offsets holds ${arrays.offsets.length} numbers; its geometry has ${rows} rows, so it needs ${rows + 1}`, 'layout.offsets');
    }
    if (arrays.flags.length !== arrays.indices.length) throw new OptionError(`layout JSON flags holds ${arrays.flags.length} numbers, indices ${arrays.indices.length}`, 'layout.flags');
    const typed = (key: 'offsets' | 'indices' | 'flags', max: number) => {
      const a = arrays[key];
      const out = key === 'flags' ? new Uint8Array(a.length) : new Int32Array(a.length);
      for (let e = 0; e < a.length; e++) {
        const x = a[e];
        if (!Number.isInteger(x) || x < 0 || x > max) throw new OptionError(`layout JSON ${key}[${e}] must be an integer in 0..${max}, got ${describeValue(x)}`, `layout.${key}`);
        out[e] = x;
      }
      return out;
    };
    const layout = new BlockLayout(
      json,
      typed('offsets', arrays.indices.length) as Int32Array,
      typed('indices', Math.ceil(json.seqK / json.blockSize) - 1) as Int32Array,
      typed('flags', BLOCK_SELECTED | BLOCK_FULL) as Uint8Array,
    );
    verifyLayout(layout);
    return layout;
  }
}

function describeValue(x: unknown): string {
  return typeof x === 'number' ? String(x) : typeof x === 'string' ? `'${x}'` : x === null ? 'null' : typeof x;
}

export function maskSpecOf(g: LayoutGeometry): MaskSpec {
  return {
    seqQ: g.seqQ, seqK: g.seqK, causal: g.causal,
    windowLeft: g.window ? g.window[0] : -1, windowRight: g.window ? g.window[1] : -1,
    globalTokens: g.globalTokens,
  };
}

/** Largest batch, heads or sequence length a layout can describe (the inputs' int32 limit). */
const MAX_DIM = 2 ** 31 - 1;

function validateGeometry(g: LayoutGeometry): void {
  if (typeof g !== 'object' || g === null) throw new OptionError('layout geometry must be an object', 'layout');
  for (const key of ['batch', 'heads', 'seqQ', 'seqK', 'blockSize'] as const) {
    if (!Number.isSafeInteger(g[key]) || g[key] < 1 || g[key] > MAX_DIM) throw new ShapeError(`layout ${key} must be an integer in 1..${MAX_DIM}, got ${describeValue(g[key])}`, `layout.${key}`);
  }
  if (g.blockSize % 16 !== 0 || g.blockSize > 256) throw new OptionError(`layout blockSize must be a multiple of 16 in 16..256, got ${g.blockSize}`, 'layout.blockSize');
  if (g.queryBlockSize !== undefined && !(Number.isInteger(g.queryBlockSize) && g.queryBlockSize >= 1 && g.queryBlockSize <= 256)) {
    throw new OptionError(`layout queryBlockSize must be an integer in 1..256, got ${describeValue(g.queryBlockSize)}`, 'layout.queryBlockSize');
  }
  if (typeof g.causal !== 'boolean') throw new OptionError(`layout causal must be a boolean, got ${describeValue(g.causal)}`, 'layout.causal');
  if (!Number.isSafeInteger(g.globalTokens) || g.globalTokens < 0 || g.globalTokens > MAX_DIM) {
    throw new OptionError(`layout globalTokens must be an integer in 0..${MAX_DIM}, got ${describeValue(g.globalTokens)}`, 'layout.globalTokens');
  }
  const w = g.window;
  if (w !== null && !(Array.isArray(w) && w.length === 2 && w.every((x) => Number.isSafeInteger(x) && x >= 0 && x <= MAX_DIM))) {
    throw new OptionError(`layout window must be [left, right] (integers in 0..${MAX_DIM}) or null, got ${Array.isArray(w) ? `[${w.map(describeValue)}]` : describeValue(w)}`, 'layout.window');
  }
}

/**
 * Check that a layout is internally consistent before computing with it: its typed arrays are
 * writable, and a wrong index or a wrong FULL flag would silently give wrong attention.
 * O(entries x blockSize), small next to the attention itself.
 */
export function verifyLayout(layout: BlockLayout): void {
  validateGeometry(layout);
  const bad = (why: string) => new OptionError(`layout is inconsistent: ${why}`, 'layout');
  const { offsets, indices, flags, blockSize: bs, queryBlockSize: qbs, seqQ, seqK, numQueryBlocks: nQB, numKeyBlocks: nKB } = layout;
  const rows = layout.batch * layout.heads * nQB;
  if (offsets.length !== rows + 1 || offsets[0] !== 0 || offsets[rows] !== indices.length || flags.length !== indices.length) {
    throw bad('offsets, indices and flags do not fit its geometry');
  }
  // Offsets first, all of them: the entry loops below trust them.
  for (let r = 0; r < rows; r++) if (!(offsets[r + 1] >= offsets[r])) throw bad(`offsets decrease at row ${r}`);
  const spec = layout.maskSpec;
  for (let r = 0; r < rows; r++) {
    const I = r % nQB;
    const i0 = I * qbs;
    const i1 = Math.min(seqQ, i0 + qbs) - 1;
    for (let e = offsets[r]; e < offsets[r + 1]; e++) {
      const J = indices[e];
      if (!(J >= 0 && J < nKB) || (e > offsets[r] && J <= indices[e - 1])) throw bad(`entry ${e} (key block ${J}) is out of range or out of order`);
      if (flags[e] & ~(BLOCK_SELECTED | BLOCK_FULL)) throw bad(`entry ${e} has unknown flag bits ${flags[e]}`);
      const cov = tileCoverage(spec, i0, i1, J * bs, Math.min(seqK, J * bs + bs) - 1, (flags[e] & BLOCK_SELECTED) !== 0);
      if (cov === Coverage.None) throw bad(`entry ${e} (query block ${I}, key block ${J}) has no allowed pair`);
      if ((cov === Coverage.Full) !== ((flags[e] & BLOCK_FULL) !== 0)) throw bad(`entry ${e} (query block ${I}, key block ${J}) has a wrong FULL flag`);
    }
    const missing = missingWindowSinkBlock(layout, r, i0, i1);
    if (missing >= 0) throw bad(`query block ${I} of row ${r} does not visit key block ${missing}, which its window or sinks reach`);
  }
}

/**
 * A key block the window or the sinks reach from rows [i0, i1] that layout row r does not
 * list, or -1. Candidates come from the union of the rows' window and sink ranges, and the
 * first unlisted one ends the search, so the work is bounded by the row's entries.
 */
function missingWindowSinkBlock(layout: BlockLayout, r: number, i0: number, i1: number): number {
  const spec = layout.maskSpec;
  const { blockSize: bs, seqK, offsets, indices } = layout;
  const last = causalLimit(spec, i1); // rows further down see further keys
  const ranges: [number, number][] = [];
  if (spec.globalTokens > 0) ranges.push([0, Math.min(last, spec.globalTokens - 1)]);
  if (spec.windowLeft >= 0) {
    const shift = seqK - layout.seqQ;
    ranges.push([Math.max(0, i0 + shift - spec.windowLeft), Math.min(last, i1 + shift + spec.windowRight)]);
  }
  const checked = new Set<number>(); // sink and window ranges may overlap
  for (const [lo, hi] of ranges) {
    for (let J = Math.floor(lo / bs); lo <= hi && J <= Math.floor(hi / bs); J++) {
      if (checked.has(J)) continue;
      checked.add(J);
      if (tileCoverage(spec, i0, i1, J * bs, Math.min(seqK, J * bs + bs) - 1, false) === Coverage.None) continue;
      if (!listed(indices, offsets[r], offsets[r + 1], J)) return J;
    }
  }
  return -1;
}

/** Binary search of the sorted entries [lo, hi) for key block J. */
function listed(indices: Int32Array, lo: number, hi: number, J: number): boolean {
  const end = hi;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (indices[mid] < J) lo = mid + 1;
    else hi = mid;
  }
  return lo < end && indices[lo] === J;
}
