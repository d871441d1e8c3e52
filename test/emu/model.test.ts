/**
 * The CPU execution model's own checks (cuda/emu/tests/model_check.cc), run from the emulated
 * build: fragment layouts of every primitive, shuffles and votes, cp.async, the Tensor Core
 * matmul against a host product, and the misuse reports. One jest test per check.
 */
import { checkProgramSuite } from './check-program';

checkProgramSuite('model', 'CPU execution model checks', 18, 120_000);
