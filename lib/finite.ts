/**
 * Value checks for data about to be stored or computed in a given type. NaN and infinities are
 * refused, and so are finite values that the conversion to that type would turn into an
 * infinity: the conversion rounds to nearest even, so a float32 value x becomes ±Infinity in
 * float16 exactly when |x| >= 65520 (halfway between the largest float16, 65504, and 2^16;
 * values in (65504, 65520) round down to 65504 and are accepted), and in bfloat16 exactly when
 * |x| >= (2 - 2^-8) * 2^127 (halfway between the largest bfloat16 and 2^128).
 */
import { ValueError } from './errors';
import type { TensorType } from './tensor';

/** The smallest magnitude that becomes ±Infinity when stored as each type. */
export const OVERFLOW_BOUND: Readonly<Record<TensorType, number>> = Object.freeze({
  float32: Infinity,
  float16: 65520,
  bfloat16: (2 - 2 ** -8) * 2 ** 127,
});

/** Why the value at `index` of `name` is refused in `type`. */
export function refusal(name: string, index: number, value: number | null, type: TensorType): string {
  const shown = value === null ? 'not finite' : `${value}`;
  if (value !== null && Number.isFinite(value)) {
    return `${name}[${index}] is ${shown}, which becomes Infinity in ${type} (|x| must stay below ${OVERFLOW_BOUND[type]})`;
  }
  const range = Number.isFinite(OVERFLOW_BOUND[type]) ? ` and below ${OVERFLOW_BOUND[type]} in magnitude for ${type}` : '';
  return `${name}[${index}] is ${shown}; values must be finite${range}`;
}

/** Throws ERR_VALUE naming `name` at the first value of `data` that is not finite in `type`. */
export function checkValues(name: string, data: Float32Array, type: TensorType): void {
  const bound = OVERFLOW_BOUND[type];
  for (let i = 0; i < data.length; i++) {
    // Written so that NaN fails it too.
    if (!(Math.abs(data[i]) < bound)) throw new ValueError(refusal(name, i, data[i], type), name);
  }
}

/** Exponent bits of the 16-bit types: all ones is an infinity or a NaN. */
const EXPONENT_MASK = { float16: 0x7c00, bfloat16: 0x7f80 } as const;

/** Throws ERR_VALUE naming `name` at the first raw 16-bit pattern that is an infinity or a NaN. */
export function checkRawValues(name: string, bits: Uint16Array, type: 'float16' | 'bfloat16'): void {
  const mask = EXPONENT_MASK[type];
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & mask) === mask) throw new ValueError(refusal(name, i, null, type) + ` (bit pattern 0x${bits[i].toString(16)})`, name);
  }
}
