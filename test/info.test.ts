/** info(): version, platform and what each backend can do here. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { attention, info } from '../lib';
import { BACKENDS, PROFILES } from './profiles';

describe('info()', () => {
  const i = info();

  test('version matches package.json; node and platform describe this process', () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
    expect(i.version).toBe(pkg.version);
    expect(i.node).toBe(process.version);
    expect(i.platform).toBe(`${process.platform}-${process.arch}`);
  });

  test("lists every backend of the test profiles once with a reason: js available, each available one with its profile's dtypes", () => {
    expect(i.backends.map((b) => b.name).sort()).toEqual([...BACKENDS].sort());
    expect(i.backends.find((b) => b.name === 'js')!.available).toBe(true);
    for (const b of i.backends) {
      expect(typeof b.reason).toBe('string');
      expect(b.reason.trim().length).toBeGreaterThan(0);
      // The suites hold each backend to its profile: the dtypes it reports must be the profile's.
      expect(b.dtypes).toEqual(b.available ? PROFILES[b.name].dtypes : []);
    }
  });

  test("autoBackend is the backend a call with backend 'auto' runs on", async () => {
    const shape = { batch: 1, heads: 1, seqQ: 2, headDim: 4 };
    const x = new Float32Array(8).fill(0.5);
    const r = await attention(x, x, x, { shape, backend: 'auto' });
    expect(i.autoBackend).toBe(r.backend);
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
