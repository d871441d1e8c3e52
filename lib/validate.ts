/** Small checks that throw coded errors naming the argument. */
import { OptionError } from './errors';

export function checkInt(argument: string, value: unknown, min: number, max: number, make = (m: string, a: string) => new OptionError(m, a)): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw make(`${argument} must be an integer in ${min}..${max}, got ${describe(value)}`, argument);
  }
  return value;
}

export function checkNumber(argument: string, value: unknown, min: number, max: number, { minOpen = false } = {}): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (minOpen && value === min)) {
    const range = `${minOpen ? '(' : '['}${min}, ${max}]`;
    throw new OptionError(`${argument} must be a finite number in ${range}, got ${describe(value)}`, argument);
  }
  return value;
}

export function checkBoolean(argument: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new OptionError(`${argument} must be a boolean, got ${describe(value)}`, argument);
  return value;
}

export function checkOneOf<T extends string>(argument: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw new OptionError(`${argument} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describe(value)}`, argument);
  }
  return value as T;
}

export function checkKeys(argument: string, obj: object, allowed: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) throw new OptionError(`unknown option ${argument}.${key}; expected one of ${allowed.join(', ')}`, `${argument}.${key}`);
  }
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null) return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  return typeof value;
}

/**
 * `ceil(x)` that forgives float64 noise just above an integer (0.1 * 30 = 3.0000000000000004 -> 3).
 * The tolerance is relative: a tiny positive product (ratio 1e-12 of 100 blocks) still rounds
 * up to 1, as ceil does.
 */
export function ceilTolerant(x: number): number {
  return Math.ceil(x - 1e-9 * Math.abs(x));
}
