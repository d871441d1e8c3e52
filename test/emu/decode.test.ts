/**
 * The decode kernels (cuda/decode), run in the emulated build by cuda/decode/decode_check.cc
 * against float64 host functions over the same rounded inputs: the pool and page metadata an
 * append writes, split-KV attention over the page flags (window, sinks, GQA packed, m >= 1,
 * odd page sizes and head dims, several splits), the page counts of ratio and topBlocks, PSA's
 * shortest prefix for progressive, top-k, and the LSE combine. One jest test per check.
 */
import { checkProgramSuite } from './check-program';

checkProgramSuite('decode', 'decode kernel checks', 14);
