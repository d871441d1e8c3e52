/**
 * scripts/build-emu.js without its tools (PATH emptied, so neither cmake nor a C++ compiler is
 * found and nothing is built): outside CI it says why and exits 0, so the cuda-emu suites skip
 * with that reason; under CI=true it must fail the run instead.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const script = join(__dirname, '..', 'scripts', 'build-emu.js');
const run = (env: Record<string, string>) => spawnSync(process.execPath, [script], { env: { PATH: '', ...env }, encoding: 'utf8' });

describe('scripts/build-emu.js with cmake and the C++ compiler missing', () => {
  test('CI=true: exits 1 naming what is missing', () => {
    const r = run({ CI: 'true' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/CI=true and the emulated addon cannot be built: .*cmake.*a C\+\+ compiler.* not found/);
  });

  test('outside CI: exits 0 and says why it builds nothing', () => {
    const r = run({});
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/not building the emulated addon: .*cmake.*a C\+\+ compiler.* not found/);
  });
});
