/** The in-flight cases (in-flight.cases.ts), each in a child process with --expose-gc. */
import { missingBuild, runCase, summary } from './child';
import { IN_FLIGHT_CASES } from './in-flight.cases';

const missing = missingBuild();
if (missing) test.skip(`in-flight cases: skipped because ${missing}`, () => {});

(missing ? describe.skip : describe)('inputs changed while a call is in flight', () => {
  test.each(IN_FLIGHT_CASES.map(([name, body]) => [name, body]))('%s: resolves with the unchanged answer', (_name, body) => {
    expect(summary(runCase(body, { exposeGc: true }))).toEqual({ status: 0, signal: null, crash: null, outcome: { resolved: 'same' } });
  });
});
