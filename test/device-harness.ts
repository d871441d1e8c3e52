/**
 * One call on a device backend (cuda or cuda-emu) against the float64 oracle, with the
 * accuracy rules of DESIGN.md §2 for 16-bit compute:
 *   - inputs are rounded to the compute type first, so library and oracle see the same values;
 *   - the selection is compared with its tolerance: a row may differ from the oracle's only in
 *     blocks whose estimates tie the cut within `selTol` (float32 estimates vs float64);
 *   - the attention is compared given the same selection and the same thresholds, within 5e-3
 *     (float16) or 1.5e-2 (bfloat16) relative Frobenius error;
 *   - LSE, thresholds, stats and the layout's FULL flags are checked too.
 */
import { attention, Tensor } from '../lib/index';
import type { AttentionOptions, AttentionResult, BlockLayout } from '../lib/index';
import { expectLayout, expectLse, expectOutput, expectStats, hasNaN } from './compare';
import { randomQKV, ShapeLike } from './data';
import { oracle, oracleSelection, OracleOptions, OracleResult, optionsFromLayout, selectionOf } from './oracle';
import { roundTo } from './rounding';

export type Compute = 'float16' | 'bfloat16';
export const OUTPUT_TOL: Record<Compute, number> = { float16: 5e-3, bfloat16: 1.5e-2 };

export interface DeviceInputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

export interface DeviceCheck {
  dtype?: Compute;
  /** Relative tolerance on estimates at the selection cut (default 1e-4). */
  selTol?: number;
  /** Upload q, k, v as device tensors of the compute type first (default: pass Float32Arrays). */
  tensors?: boolean;
}

/** The same inputs, rounded to the compute type. */
export function roundedInputs(d: DeviceInputs, dtype: Compute): DeviceInputs {
  return { q: roundTo(d.q, dtype), k: roundTo(d.k, dtype), v: roundTo(d.v, dtype) };
}

/**
 * Rows where the library's selection differs from the oracle's must differ only in blocks
 * whose estimates are within `tol` (relative to the largest estimate magnitude of the row) of
 * the oracle's cut. Returns how many rows differed (excused), for the caller to bound.
 */
export function expectSelectionWithinTolerance(layout: BlockLayout, q: Float32Array, k: Float32Array, shape: ShapeLike, opts: OracleOptions, tol: number): number {
  const own = oracleSelection(q, k, shape, opts);
  const got = selectionOf(layout);
  expect(got.length).toBe(own.selection.length);
  let differing = 0;
  for (let r = 0; r < got.length; r++) {
    const a = new Set(got[r]);
    const b = new Set(own.selection[r]);
    const diff = [...a].filter((J) => !b.has(J)).concat([...b].filter((J) => !a.has(J)));
    if (!diff.length) continue;
    differing++;
    const e = own.estimates[r];
    const kept = own.selection[r].map((J) => e[J]);
    const cut = kept.length ? Math.min(...kept) : Math.max(...Array.from(e).filter((x) => !Number.isNaN(x)));
    let mag = 1e-30;
    for (const x of e) if (!Number.isNaN(x)) mag = Math.max(mag, Math.abs(x));
    for (const J of diff) {
      if (!(Math.abs(e[J] - cut) <= tol * mag)) {
        throw new Error(`selection row ${r}: block ${J} (estimate ${e[J]}) differs from the oracle's choice [${own.selection[r]}] vs [${got[r]}], cut ${cut}`);
      }
    }
  }
  return differing;
}

export async function compareOnDevice(
  backend: 'cuda' | 'cuda-emu', shape: ShapeLike, opts: OracleOptions, data: DeviceInputs | number, check: DeviceCheck = {},
): Promise<{ r: AttentionResult<Float32Array>; given: OracleResult; excused: number }> {
  const dtype = check.dtype ?? 'float16';
  const d = roundedInputs(typeof data === 'number' ? randomQKV(shape, data) : data, dtype);
  const options = { ...(opts as AttentionOptions), returnLse: true, returnThresholds: true, backend, dtype } as AttentionOptions;
  let r: AttentionResult<Float32Array>;
  if (check.tensors) {
    const dims = (n: number, h: number) => (shape.layout === 'bnhd' ? [shape.batch, n, h, shape.headDim] : [shape.batch, h, n, shape.headDim]);
    const Hkv = shape.kvHeads ?? shape.heads;
    const Nk = shape.seqK ?? shape.seqQ;
    const tq = await Tensor.upload(d.q, dims(shape.seqQ, shape.heads), { type: dtype, location: backend });
    const tk = await Tensor.upload(d.k, dims(Nk, Hkv), { type: dtype, location: backend });
    const tv = await Tensor.upload(d.v, dims(Nk, Hkv), { type: dtype, location: backend });
    try {
      const rt = await attention(tq, tk, tv, { ...options, shape });
      const out = rt.output as Tensor;
      expect(out.location).toBe(backend);
      expect(out.dims).toEqual(tq.dims);
      r = { ...rt, output: await out.download() };
      out.dispose();
    } finally {
      tq.dispose();
      tk.dispose();
      tv.dispose();
    }
  } else {
    r = await attention(d.q, d.k, d.v, { ...options, shape });
  }
  expect(r.backend).toBe(backend);
  expect(hasNaN(r.output)).toBe(false);

  const own = oracle(d.q, d.k, d.v, shape, opts);
  let excused = 0;
  let given = own;
  const sameSelection: OracleOptions = own.sparse ? { ...opts, ...optionsFromLayout(r.layout!) } : { ...opts };
  if (opts.blocks) excused = expectSelectionWithinTolerance(r.layout!, d.q, d.k, shape, opts, check.selTol ?? 1e-4);
  const topK = opts.topK !== undefined || opts.topKRatio !== undefined;
  if (topK) {
    // Thresholds are float32 scores on the device: within float32 accumulation of the oracle's.
    const ownT = own.thresholds;
    for (let i = 0; i < ownT.length; i++) {
      const w = ownT[i];
      const g = r.thresholds![i];
      if (own.sparse && excused) break; // rows of a different selection have other candidates
      if (w === -Infinity ? g !== -Infinity : !(Math.abs(g - w) <= 1e-4 * Math.max(1, Math.abs(w)))) throw new Error(`thresholds[${i}]: want ${w}, got ${g}`);
    }
  }
  if (own.sparse || topK) {
    given = oracle(d.q, d.k, d.v, shape, {
      ...sameSelection, // The device keeps f32 score >= tau; float64 scores differ from those by accumulation
      // rounding (~1e-7 here), so a slack of 2e-6 keeps the k-th key without taking in neighbours.
      ...(topK ? { thresholds: r.thresholds!, thresholdSlack: 2e-6 } : {}),
    });
  }
  expectOutput(r.output, given, OUTPUT_TOL[dtype]);
  expectLse(r.lse, given, 1e-3);
  if (!topK) {
    expect(Array.from(r.thresholds!).every((t) => t === -Infinity)).toBe(true);
    expectStats(r.stats, given);
  } else {
    expect(r.stats.allowedPairs).toBe(given.stats.allowedPairs);
    expect(Math.abs(r.stats.keptPairs - given.stats.keptPairs)).toBeLessThanOrEqual(Math.max(2, 1e-3 * given.stats.keptPairs));
  }
  if (given.sparse) expectLayout(r.layout, given);
  else expect(r.layout).toBeUndefined();
  return { r, given, excused };
}
