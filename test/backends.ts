/**
 * The suites run over every backend of test/profiles.ts. A backend `info()` reports available
 * gets the suite's body; an unavailable one registers one skipped test saying why (or, for a
 * backend CI must run, a failing one under CI=true). Cases a backend cannot run are skipped
 * with the profile's reason through `describeIf` / `testIf`, the only skip helpers.
 */
import { info } from '../lib/index';
import { OracleSoftmax, polyCoefficients, polyRelError } from './oracle';
import { BACKENDS, BackendProfile, ComputeType, PROFILES, TestBackend } from './profiles';

export type { ComputeType, TestBackend } from './profiles';

/** What a case asks of a backend beyond the common contract. */
export interface CaseNeeds {
  blockSize?: number;
  dtype?: ComputeType;
  softmax?: OracleSoftmax;
  estimate?: 'mean' | 'bound' | 'moment';
  /** With blockSize (default 64): a query block size other than blockSize. */
  queryBlockSize?: number;
  /** The case runs attentionBackward. */
  backward?: boolean;
  /** With backward: the head dim of its forward. */
  headDim?: number;
}

export interface BackendUnderTest {
  name: TestBackend;
  profile: BackendProfile;
  /** Why this backend cannot run a case with these needs (the profile's reason), or null. */
  cannot(needs: CaseNeeds): string | null;
}

export function backendUnderTest(name: TestBackend): BackendUnderTest {
  const profile = PROFILES[name];
  const cannot = ({ blockSize, dtype, softmax, estimate, queryBlockSize, backward, headDim }: CaseNeeds): string | null => {
    if (backward && profile.backwardReason) return `backward: ${profile.backwardReason}`;
    const dims = profile.backwardHeadDims;
    if (backward && headDim !== undefined && dims && headDim > dims.max) return `backward at head dim ${headDim}: ${dims.reason}`;
    if (blockSize !== undefined && !profile.blockSizes.includes(blockSize)) return `blockSize ${blockSize}: ${profile.blockSizeReason}`;
    if (dtype !== undefined && !profile.dtypes.includes(dtype)) return `dtype ${dtype}: computes in ${profile.dtypes.join(', ')}`;
    const poly = polyCoefficients(softmax);
    if (poly && profile.polyError && polyRelError(poly) > profile.polyError.limit) return profile.polyError.reason;
    if (estimate !== undefined && !profile.estimates.includes(estimate)) return `estimate '${estimate}': ${profile.estimateReason}`;
    if (queryBlockSize !== undefined && queryBlockSize !== (blockSize ?? 64) && profile.queryBlocksReason) return `queryBlockSize ${queryBlockSize}: ${profile.queryBlocksReason}`;
    return null;
  };
  return { name, profile, cannot };
}

/** Why `name` cannot run here (info()'s reason), or null when it is available. */
export function unavailableReason(name: TestBackend): string | null {
  const s = info().backends.find((x) => x.name === name);
  if (!s) return 'not listed by info().backends';
  return s.available ? null : s.reason;
}

/** `describe(title, body)`, or when `why` is a reason, a group holding one skipped test that gives it. */
export function describeIf(why: string | null, title: string, body: () => void): void {
  describe(title, why === null ? body : () => test.skip(why, () => {}));
}

/** `test(title, fn)`, or when `why` is a reason, a skipped test whose title gives it. */
export function testIf(why: string | null, title: string, fn: () => Promise<unknown> | void): void {
  if (why === null) test(title, async () => { await fn(); });
  else test.skip(`${title}: ${why}`, () => {});
}

/** What forEachBackend registers for a backend: its suite, a skip giving the reason, or a failure (a backend CI must run). */
export type Registration = { kind: 'run' } | { kind: 'skip' | 'fail'; text: string };

export function registrationOf(name: TestBackend, why: string | null, ci: boolean): Registration {
  if (why === null) return { kind: 'run' };
  if (ci && PROFILES[name].requiredInCI) return { kind: 'fail', text: `backend '${name}' is required under CI=true but unavailable: ${why}` };
  return { kind: 'skip', text: `backend '${name}' unavailable: ${why}` };
}

/** `describe('<title> [backend <name>]', ...)` for every backend of the profiles. */
export function forEachBackend(title: string, body: (be: BackendUnderTest) => void): void {
  for (const name of BACKENDS) {
    const group = `${title} [backend ${name}]`;
    const reg = registrationOf(name, unavailableReason(name), process.env.CI === 'true');
    if (reg.kind === 'fail') {
      describe(group, () => test(`backend '${name}' runs`, () => {
        throw new Error(reg.text);
      }));
    } else {
      describeIf(reg.kind === 'skip' ? reg.text : null, group, () => body(backendUnderTest(name)));
    }
  }
}
