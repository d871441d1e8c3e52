/**
 * The fused sparse forward kernel (cuda/attention), run in the emulated build by
 * cuda/emu/tests/forward_check.cc against a float64 host attention over the same rounded
 * inputs and allowed sets: fp16 and bf16, masks, layouts, GQA, both memory layouts, odd head
 * dims, empty rows, poly softmax, top-k thresholds. One jest test per check.
 */
import { checkProgramSuite } from './check-program';

checkProgramSuite('forward', 'fused sparse forward kernel checks', 40);
