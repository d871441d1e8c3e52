/**
 * One decode step on a device cache: q taken (host data copied, device tensors shared), the
 * step queued behind the cache's appends, the page table of q's sequences read as the cache is
 * when its turn comes, the kernels run, and the result with its stats read back once.
 */
import type { DecodeResult } from '../decode';
import { OptionError, ShapeError } from '../errors';
import { checkValues } from '../finite';
import type { KvCache } from '../kv-cache';
import type { NativeDeviceTensor } from '../native';
import type { DecodeProblem, DecodeStats } from '../reference/decode';
import { checkTensorFinite, Tensor } from '../tensor';
import { DevicePool, deviceDecodeUnsupported, MAX_PLAN_PAGES } from './device-decode';
import { DeviceStorage } from './device-storage';

export async function decodeOnDevice(p: DecodeProblem, q: Float32Array | Tensor, cache: KvCache, checkFinite: boolean): Promise<DecodeResult> {
  const why = deviceDecodeUnsupported(p, cache.pageSize);
  if (why) throw new OptionError(`backend '${cache.location}' cannot run this decode: ${why}`, 'backend');
  // Taken now, before the promise is returned: nothing the caller does later can reach it.
  const shared = q instanceof Tensor ? (q.storage as DeviceStorage).native.share() : null;
  const host = q instanceof Tensor ? null : q.slice();
  if (shared && shared.type !== 'float32' && shared.type !== cache.dtype) {
    shared.dispose();
    throw new OptionError(`q is ${shared.type}; a decode on a ${cache.dtype} cache takes float32 or ${cache.dtype} queries`, 'q');
  }
  try {
    if (checkFinite) {
      if (host) checkValues('q', host, cache.dtype);
      else await checkTensorFinite('q', new Tensor(new DeviceStorage(cache.location as 'cuda', shared!), [1, 1, 1, shared!.count]), cache.dtype);
    }
    return await cache.onDevice((pool) => step(pool, p, host, shared, cache));
  } finally {
    shared?.dispose();
  }
}

async function step(pool: DevicePool, p: DecodeProblem, host: Float32Array | null, shared: NativeDeviceTensor | null, cache: KvCache): Promise<DecodeResult> {
  const book = cache.book;
  const ps = cache.pageSize;
  const B = p.sequences.length;
  const lengths = Int32Array.from(p.sequences, (s) => book.lengths[s]);
  for (let b = 0; b < B; b++) {
    if (lengths[b] < p.m) throw new ShapeError(`sequence ${p.sequences[b]} holds ${lengths[b]} tokens, fewer than the ${p.m} queries`, 'q');
  }
  const stride = Math.max(1, ...Array.from(lengths, (L) => Math.ceil(L / ps)));
  if (stride > MAX_PLAN_PAGES) throw new OptionError(`backend '${cache.location}' cannot run this decode: a sequence of ${stride} pages exceeds the ${MAX_PLAN_PAGES} the page plan sorts`, 'backend');
  const pageTable = new Int32Array(B * stride);
  p.sequences.forEach((s, b) => pageTable.set(cache.pagesOf(s), b * stride));

  const qHandle = shared ?? (await pool.upload(host!));
  let r;
  try {
    r = await pool.decode(qHandle, p, pageTable, stride, lengths);
  } finally {
    if (!shared) qHandle.dispose();
  }
  let output: Float32Array;
  let lse: Float32Array | undefined;
  try {
    output = await r.output.download();
    lse = r.lse ? await r.lse.download() : undefined;
  } finally {
    r.output.dispose();
    r.lse?.dispose();
  }
  const result: DecodeResult = { output, stats: statsOf(p, lengths, ps, cache.kvHeads, r), backend: cache.location as 'cuda' };
  if (lse) result.lse = lse;
  if (r.pageFlags) result.pages = visitedPages(r.pageFlags, r.maxPages);
  return result;
}

/** Per row, the pages it attended to (a nonzero flag), ascending. */
function visitedPages(flags: Uint8Array, maxPages: number): Int32Array[] {
  const rows = flags.length / maxPages;
  return Array.from({ length: rows }, (_, row) => {
    const out: number[] = [];
    for (let J = 0; J < maxPages; J++) if (flags[row * maxPages + J]) out.push(J);
    return Int32Array.from(out);
  });
}

/** The step's stats from its per-row counts (docs/decode.md#what-decode-computes). */
function statsOf(p: DecodeProblem, lengths: Int32Array, ps: number, kvHeads: number, r: { kept: Int32Array; visited: Int32Array; dropped: Float32Array; pagesRead: number }): DecodeStats {
  let keptPairs = 0;
  let allowedPairs = 0;
  let pagesVisited = 0;
  let pagesDense = 0;
  let emptyRows = 0;
  let droppedMax = 0;
  let droppedSum = 0;
  let pagesReadDense = 0;
  for (let b = 0; b < lengths.length; b++) {
    const L = lengths[b];
    pagesReadDense += kvHeads * Math.ceil(L / ps);
    for (let h = 0; h < p.heads; h++) {
      for (let i = 0; i < p.m; i++) {
        const row = (b * p.heads + h) * p.m + i;
        const pos = L - p.m + i;
        allowedPairs += pos + 1;
        pagesDense += Math.floor(pos / ps) + 1;
        keptPairs += r.kept[row];
        if (r.kept[row] === 0) emptyRows++;
        pagesVisited += r.visited[row];
        droppedMax = Math.max(droppedMax, r.dropped[row]);
        droppedSum += r.dropped[row];
      }
    }
  }
  const rows = lengths.length * p.heads * p.m;
  return {
    density: allowedPairs > 0 ? keptPairs / allowedPairs : 0,
    keptPairs, allowedPairs, pagesVisited, pagesDense, pagesRead: r.pagesRead, pagesReadDense, emptyRows,
    droppedMass: { max: droppedMax, mean: rows > 0 ? droppedSum / rows : 0 },
  };
}
