/**
 * The top-k threshold kernel (cuda/attention/topk_kernel.cuh), run in the emulated build by
 * cuda/emu/tests/topk_check.cc against a host std::nth_element over float64 scores from the
 * same rounded inputs and allowed sets: bit-exact on integer inputs (ties counted), within
 * rounding on float inputs; count and ratio modes, -inf rows, masks, layouts of block size 64,
 * 128 and 192, GQA, both memory layouts, head dims 1..256, fp16 and bf16. One jest test per check.
 */
import { checkProgramSuite } from './check-program';

checkProgramSuite('topk', 'top-k threshold kernel checks', 60);
