/** Assert that f throws a PsaError of the given class and code (and argument, when given). */
import { PsaError, PsaErrorCode } from '../lib';

export function expectThrow(f: () => unknown, cls: new (...a: never[]) => PsaError, code: PsaErrorCode, argument?: string): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(cls);
  expect((err as PsaError).code).toBe(code);
  if (argument !== undefined) expect((err as PsaError).argument).toBe(argument);
}
