/**
 * The backends the numeric suites run over. Every name in BACKENDS gets a `describe`: it runs
 * when `info()` says the backend is available, and otherwise registers one skipped test whose
 * title names the backend and the reason (a missing backend is reported, never silently passed).
 */
import { info } from '../lib/index';

export const BACKENDS = ['js', 'cuda-emu', 'cpu', 'cuda'] as const;
export type TestBackend = (typeof BACKENDS)[number];

export interface BackendUnderTest {
  name: TestBackend;
  available: boolean;
  reason: string;
  /** Emulated backends are slow: suites keep their cases small there. */
  emulated: boolean;
}

export function backendsUnderTest(): BackendUnderTest[] {
  const statuses = info().backends;
  return BACKENDS.map((name) => {
    const s = statuses.find((x) => x.name === name);
    const available = !!s && s.available && s.dtypes.includes('float32');
    const reason = !s
      ? 'not listed by info().backends'
      : !s.available
        ? s.reason
        : !s.dtypes.includes('float32')
          ? `computes in ${s.dtypes.join(', ')}, not float32: its suites with 16-bit tolerances are test/device.test.ts`
          : s.reason;
    return { name, available, reason, emulated: name === 'cuda-emu' };
  });
}

/** `describe('backend <name>', ...)` for each backend; unavailable ones register a skipped test saying why. */
export function forEachBackend(title: string, body: (backend: BackendUnderTest) => void): void {
  for (const be of backendsUnderTest()) {
    describe(`${title} [backend ${be.name}]`, () => {
      if (be.available) body(be);
      else test.skip(`backend '${be.name}' unavailable: ${be.reason}`, () => {});
    });
  }
}
