/**
 * The value checks of `checkFinite`, in one place: every input value finite, and, where the
 * library itself rounds float32 data to float16, within float16's range (|x| <= 65504; larger
 * values would round to 65504 or to infinity, so they are refused rather than changed).
 * bfloat16 has float32's range and needs no range check.
 */
import { ValueError } from './errors';
import type { Dtype } from './types';

export const FLOAT16_MAX = 65504;

/** Throws ERR_VALUE naming `name` and the first offending index. */
export function checkValues(name: string, data: Float32Array, roundsTo: Dtype | 'none'): void {
  const limit = roundsTo === 'float16' ? FLOAT16_MAX : Infinity;
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    if (x - x !== 0) throw new ValueError(`${name}[${i}] is ${x}; inputs must be finite (pass checkFinite: false to skip this check)`, name);
    if (x > limit || x < -limit) {
      throw new ValueError(`${name}[${i}] is ${x}, outside float16's range (|x| <= ${FLOAT16_MAX}): compute in bfloat16 or scale the input`, name);
    }
  }
}
