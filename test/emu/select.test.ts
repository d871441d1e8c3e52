/**
 * Block selection (cuda/attention/select.h), run in the emulated build by
 * cuda/emu/tests/select_check.cc against a float64 host port of lib/reference/select.ts and
 * BlockLayout.fromSelection over the same rounded inputs: ratio, topBlocks, progressive and
 * window/sinks only, min/max clamps, bound and moment estimates, GQA with shared selection, causal and not,
 * Nq != Nk, windows and sinks, block sizes 16..128, odd lengths, both memory layouts, fp16 and
 * bf16, up to 4096 key blocks; the O(1) tile rules against lib/mask.ts row by row; refused
 * parameters. One jest test per check.
 */
import { checkProgramSuite } from './check-program';

checkProgramSuite('select', 'block selection checks', 40);
