/**
 * The CPU backward (cpu/backward.h) against the float64 gradients of
 * cpu/tests/backward_check.cc: odd head dims and lengths, Nq != Nk, GQA, both memory layouts,
 * windows, sinks, random layouts with query blocks of 1, 16 and blockSize rows, top-k, the
 * polynomial's derivative, empty rows, each kernel set this CPU runs, 1 vs 3 threads.
 */
import { checkProgram } from './check-program';

checkProgram('psa_cpu_backward_check', 40);
