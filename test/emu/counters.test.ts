/**
 * The emulated build's performance counters (cuda/emu/counters.h) against planted access
 * patterns with known costs: bank-conflict ways of shared loads, stores, atomics and ldmatrix,
 * global sectors against bytes used, cp.async bytes, barriers, Tensor Core FLOPs, exp2 calls and
 * the host's allocations, frees and synchronisations (cuda/emu/tests/counters_check.cc).
 */
import { checkProgramSuite } from './check-program';

checkProgramSuite('counters', 'performance counter checks', 22, 120_000);
