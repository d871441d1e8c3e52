/**
 * What each backend is held to in the suites. Every suite runs over every profile here (see
 * test/backends.ts), so a new backend gets all of them by adding its profile and nothing else.
 * The accuracy rules are the contract's: docs/contract.md#accuracy.
 */
export type ComputeType = 'float32' | 'float16' | 'bfloat16';
export type TensorHome = 'cpu' | 'cuda' | 'cuda-emu';

/** How much work a suite may give the backend: the emulated build runs kernels on the CPU. */
export interface SizeBudget {
  /** Length of the long-sequence cases (one or two heads). */
  longSeq: number;
  /** Longest random sequence, and runs, of the attention property test. */
  propertySeq: number;
  propertyRuns: number;
  /** Longest random sequence of the selection-only property test. */
  selectionPropertySeq: number;
}

export interface BackendProfile {
  /** The compute types it runs, its default first. */
  dtypes: readonly ComputeType[];
  /** Output: relative Frobenius error against the oracle, per compute type. */
  tolerance: Readonly<Partial<Record<ComputeType, number>>>;
  /** LSE: absolute error (plus 2e-6 relative) against the oracle. */
  lseTolerance: number;
  /** Top-k thresholds: error relative to max(1, |tau|). */
  thresholdTolerance: number;
  /**
   * Inputs are rounded to the compute type before the call, so the backend and the oracle see
   * the same values (a 16-bit backend rounds its uploads; the oracle would not).
   */
  roundsInputs: boolean;
  /**
   * 0: the block selection, layout, thresholds and stats equal the oracle's exactly. Otherwise
   * selections may differ in blocks whose estimates tie the oracle's cut within this tolerance
   * (relative to the row's largest estimate), and the attention is compared given the
   * backend's own selection and thresholds (docs/contract.md#block-selection).
   */
  selectionTolerance: number;
  /** Block sizes it runs, ascending; and why it runs no other (valid) block size. */
  blockSizes: readonly number[];
  blockSizeReason: string;
  /** Key blocks per row its block selection handles, if it has a limit. */
  selectionKeyBlocks?: number;
  /** Where its tensor inputs live. */
  tensorHome: TensorHome;
  budget: SizeBudget;
  /** Polynomials it runs: within this relative error of 2^f (cases with worse ones are refused with ERR_OPTION naming backend, and skipped with the reason). */
  polyError?: { limit: number; reason: string };
  /** Block estimates its selection computes, and why no other. */
  estimates: readonly ('mean' | 'bound' | 'moment')[];
  estimateReason: string;
  /** Why it selects only per query block of blockSize rows (queryBlockSize must equal blockSize), if it does. */
  queryBlocksReason?: string;
  /** Why it has no backward pass, if it has none (attentionBackward refuses it with ERR_OPTION naming backend). */
  backwardReason?: string;
  /** The largest head dim its backward runs, if it has a limit, and why (larger ones are refused with ERR_OPTION naming backend). */
  backwardHeadDims?: { max: number; reason: string };
  /** Gradients (float32): relative Frobenius error against the oracle's, per compute type of the forward. */
  gradientTolerance: Readonly<Partial<Record<ComputeType, number>>>;
  /** Unavailable under CI=true is a failure, not a skip: CI must run its kernels. */
  requiredInCI: boolean;
  /** Decode (docs/decode.md): where its KvCache lives, or why it has none. */
  decode: { cache: TensorHome } | { none: string };
}

/** Every block size the library accepts (docs/contract.md#block-selection). */
export const ALL_BLOCK_SIZES: readonly number[] = Array.from({ length: 16 }, (_, i) => 16 * (i + 1));
const TILE_BLOCK_SIZES = ALL_BLOCK_SIZES.filter((bs) => bs % 64 === 0);

const FLOAT32: Omit<BackendProfile, 'tensorHome' | 'requiredInCI' | 'decode'> = {
  dtypes: ['float32'],
  tolerance: { float32: 1e-5 },
  lseTolerance: 2e-5,
  thresholdTolerance: 1e-5,
  roundsInputs: false,
  selectionTolerance: 0,
  blockSizes: ALL_BLOCK_SIZES,
  blockSizeReason: '',
  estimates: ['mean', 'bound', 'moment'],
  estimateReason: '',
  gradientTolerance: { float32: 1e-5 },
  budget: { longSeq: 1025, propertySeq: 200, propertyRuns: 60, selectionPropertySeq: 400 },
};

const DEVICE: Omit<BackendProfile, 'tensorHome' | 'requiredInCI' | 'budget' | 'decode'> = {
  dtypes: ['float16', 'bfloat16'],
  tolerance: { float16: 5e-3, bfloat16: 1.5e-2 },
  lseTolerance: 1e-3,
  thresholdTolerance: 1e-4,
  roundsInputs: true,
  // Block estimates are float32 sums on the device against float64 sums in the oracle.
  selectionTolerance: 1e-4,
  blockSizes: TILE_BLOCK_SIZES,
  blockSizeReason: 'the device kernels tile by 64 (block sizes 64, 128, 192, 256)',
  selectionKeyBlocks: 4096,
  polyError: {
    limit: 1e-4,
    reason: "the forward kernel's online softmax rescales by exact powers of two, which a polynomial E follows only up to its own error: " +
      'the device runs polynomials within 1e-4 of 2^f (degree 3 and up) and refuses the others',
  },
  estimates: ['mean', 'bound', 'moment'],
  estimateReason: '',
  queryBlocksReason: 'the device kernels select per query block of blockSize rows',
  backwardHeadDims: { max: 128, reason: 'the device backward keeps dK and dV in registers, which hold them up to head dim 128' },
  // fp16 or bf16 inputs, dO, P and dS rounded to 16 bits for the Tensor Cores, float32 sums: the forward's tolerances.
  gradientTolerance: { float16: 5e-3, bfloat16: 1.5e-2 },
};

const TABLE = {
  js: { ...FLOAT32, tensorHome: 'cpu', requiredInCI: true, decode: { cache: 'cpu' } },
  // The emulated build computes as the device does, at the CPU execution model's speed.
  'cuda-emu': {
    ...DEVICE, tensorHome: 'cuda-emu', requiredInCI: true,
    budget: { longSeq: 1025, propertySeq: 160, propertyRuns: 30, selectionPropertySeq: 256 },
    decode: { cache: 'cuda-emu' },
  },
  cpu: { ...FLOAT32, tensorHome: 'cpu', requiredInCI: false, decode: { cache: 'cpu' } },
  cuda: { ...DEVICE, tensorHome: 'cuda', requiredInCI: false, budget: FLOAT32.budget, decode: { cache: 'cuda' } },
} satisfies Record<string, BackendProfile>;

export type TestBackend = keyof typeof TABLE;

export const PROFILES: Readonly<Record<TestBackend, BackendProfile>> = TABLE;
export const BACKENDS = Object.keys(PROFILES) as TestBackend[];

/** The output tolerance for one of the profile's compute types. */
export function outputTolerance(p: BackendProfile, dtype: ComputeType): number {
  const t = p.tolerance[dtype];
  if (t === undefined) throw new Error(`no output tolerance for ${dtype}: the profile computes in ${p.dtypes.join(', ')}`);
  return t;
}
