/**
 * The backward kernels (cuda/backward), run in the emulated build by
 * cuda/backward/check/backward_check.cc through the whole device call against a float64 host
 * backward over the same rounded inputs and kept sets: fp16 and bf16, dense and layouts at
 * block sizes 64 to 256, window, sinks, selected blocks, top-k, polynomial exp, empty rows, GQA,
 * both memory layouts, head dims 1 to 128, and bit-identical repeats. One jest test per check.
 */
import { checkProgramSuite } from './check-program';

checkProgramSuite('backward', 'backward kernel checks', 30);
