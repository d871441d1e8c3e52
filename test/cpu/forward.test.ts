/**
 * The CPU kernels (cpu/) against the float64 attention of cpu/tests/forward_check.cc: odd head
 * dims and lengths, Nq != Nk, GQA, both memory layouts, windows, sinks, layouts, selection,
 * top-k with ties, the polynomial exp2, each kernel set this CPU runs, 1 vs 3 threads.
 */
import { checkProgram } from './check-program';

checkProgram('psa_cpu_forward_check', 60);
