/** The matrix itself: which backends get their suites, which skip with a reason, and which fail a CI run. */
import { BACKENDS, PROFILES } from './profiles';
import { backendUnderTest, registrationOf } from './backends';

describe('registrationOf', () => {
  test('an available backend runs its suites, in CI or not', () => {
    for (const name of BACKENDS) {
      expect(registrationOf(name, null, false)).toEqual({ kind: 'run' });
      expect(registrationOf(name, null, true)).toEqual({ kind: 'run' });
    }
  });

  test('an unavailable backend skips with the reason outside CI', () => {
    expect(registrationOf('cuda-emu', 'the emulated build is not present', false)).toEqual({ kind: 'skip', text: "backend 'cuda-emu' unavailable: the emulated build is not present" });
  });

  test('under CI=true, an unavailable backend CI must run fails; the others still skip', () => {
    expect(registrationOf('cuda-emu', 'the emulated build is not present', true)).toEqual({
      kind: 'fail', text: "backend 'cuda-emu' is required under CI=true but unavailable: the emulated build is not present",
    });
    expect(registrationOf('cuda', 'no device', true).kind).toBe('skip');
    expect(BACKENDS.filter((b) => PROFILES[b].requiredInCI).sort()).toEqual(['cuda-emu', 'js']);
  });
});

describe('profiles', () => {
  test.each(BACKENDS)('%s: a tolerance for every compute type, block sizes ascending and valid', (name) => {
    const p = PROFILES[name];
    expect(p.dtypes.length).toBeGreaterThan(0);
    for (const t of p.dtypes) expect(p.tolerance[t]).toBeGreaterThan(0);
    expect([...p.blockSizes].sort((a, b) => a - b)).toEqual(p.blockSizes);
    for (const bs of p.blockSizes) expect(bs % 16 === 0 && bs >= 16 && bs <= 256).toBe(true);
    // A profile that rounds inputs computes in 16 bits; one that does not, in float32.
    expect(p.roundsInputs).toBe(!p.dtypes.includes('float32'));
  });

  test("cannot(): the profile's reason for a block size or dtype it does not run, null otherwise", () => {
    const emu = backendUnderTest('cuda-emu');
    expect(emu.cannot({ blockSize: 16 })).toMatch(/^blockSize 16: /);
    expect(emu.cannot({ blockSize: 128 })).toBeNull();
    expect(emu.cannot({ dtype: 'float32' })).toMatch(/^dtype float32: computes in float16, bfloat16/);
    expect(emu.cannot({ softmax: { degree: 5 } })).toBeNull();
    const js = backendUnderTest('js');
    expect(js.cannot({ blockSize: 48, dtype: 'float32', softmax: { coefficients: [1, 1] } })).toBeNull();
    expect(js.cannot({ dtype: 'bfloat16' })).not.toBeNull();
  });
});
