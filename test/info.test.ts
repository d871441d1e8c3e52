/** info(): version, platform and what each backend can do here. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { info } from '../lib';

describe('info()', () => {
  const i = info();

  test('version matches package.json; node and platform describe this process', () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
    expect(i.version).toBe(pkg.version);
    expect(i.node).toBe(process.version);
    expect(i.platform).toBe(`${process.platform}-${process.arch}`);
  });

  test('lists every backend once with a reason: js available, the others available with their dtypes or unavailable', () => {
    const names = i.backends.map((b) => b.name).sort();
    expect(names).toEqual(['cpu', 'cuda', 'cuda-emu', 'js']);
    const js = i.backends.find((b) => b.name === 'js')!;
    expect(js.available).toBe(true);
    expect(js.dtypes).toContain('float32');
    expect(js.reason.length).toBeGreaterThan(0);
    for (const b of i.backends.filter((x) => x.name !== 'js')) {
      expect(typeof b.reason).toBe('string');
      expect(b.reason.trim().length).toBeGreaterThan(0);
      // The device backends compute in 16 bits, cpu in float32.
      expect(b.dtypes).toEqual(!b.available ? [] : b.name === 'cpu' ? ['float32'] : ['float16', 'bfloat16']);
    }
  });

  test("autoBackend (for float32) is 'cpu' where the addon has it, else 'js'", () => {
    expect(i.autoBackend).toBe(i.backends.find((b) => b.name === 'cpu')!.available ? 'cpu' : 'js');
  });

  test('native addon: loaded with a path, or not loaded with a reason', () => {
    if (i.native.loaded) {
      expect(typeof i.native.path).toBe('string');
      expect(i.native.path.length).toBeGreaterThan(0);
    } else {
      expect(i.native.reason.trim().length).toBeGreaterThan(0);
    }
  });

  test('plain data (JSON round trip) and stable across calls', () => {
    expect(JSON.parse(JSON.stringify(i))).toEqual(i);
    const again = info();
    expect(again.version).toBe(i.version);
    expect(again.backends.map((b) => [b.name, b.available])).toEqual(i.backends.map((b) => [b.name, b.available]));
    // Mutating a returned object does not leak into the next call.
    i.backends[0].available = !i.backends[0].available;
    expect(info().backends[0].available).toBe(again.backends[0].available);
  });
});
