/** progressiveSchedule: a pure map from training step to sparse options. */
import fc from 'fast-check';
import { attention, OptionError, PsaError, progressiveSchedule } from '../lib';
import type { ScheduleConfig } from '../lib';
import { randomArray } from './data';

function expectOptionError(f: () => unknown, argument?: string): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(OptionError);
  expect((err as PsaError).code).toBe('ERR_OPTION');
  if (argument !== undefined) expect((err as PsaError).argument).toBe(argument);
}

describe('values along the schedule', () => {
  const config: ScheduleConfig = { warmupSteps: 100, rampSteps: 1000, blockRatio: [1, 0.2], topKRatio: [1, 0.5], window: [512, 128], globalTokens: 4 };
  const s = progressiveSchedule(config);

  test('dense ({}) before warm-up ends', () => {
    for (const step of [0, 1, 50, 99, 99.5]) expect(s(step)).toEqual({});
  });

  test('start values at the end of warm-up', () => {
    expect(s(100)).toEqual({ blocks: { ratio: 1 }, topKRatio: 1, window: 512, globalTokens: 4 });
  });

  test('end values after warm-up + ramp, and they stay', () => {
    for (const step of [1100, 1101, 5000, 1e12]) {
      const o = s(step);
      expect((o.blocks as { ratio: number }).ratio).toBeCloseTo(0.2, 12);
      expect(o.topKRatio).toBeCloseTo(0.5, 12);
      expect(o.window).toBe(128);
      expect(o.globalTokens).toBe(4);
    }
  });

  test('linear midpoint', () => {
    const o = s(600);
    expect((o.blocks as { ratio: number }).ratio).toBeCloseTo(0.6, 12);
    expect(o.topKRatio).toBeCloseTo(0.75, 12);
    expect(o.window).toBe(320);
    // and a quarter of the way
    const q = s(350);
    expect((q.blocks as { ratio: number }).ratio).toBeCloseTo(0.8, 12);
  });

  test('linear is monotone between its ends', () => {
    let prev = Infinity;
    for (let step = 100; step <= 1100; step += 10) {
      const r = (s(step).blocks as { ratio: number }).ratio;
      expect(r).toBeLessThanOrEqual(prev);
      prev = r;
    }
  });

  test('cosine: same ends, same midpoint, eases in and out', () => {
    const c = progressiveSchedule({ rampSteps: 100, curve: 'cosine', progressive: [0.5, 0.9] });
    const p = (step: number) => (c(step).blocks as { progressive: number }).progressive;
    expect(p(0)).toBeCloseTo(0.5, 12);
    expect(p(100)).toBeCloseTo(0.9, 12);
    expect(p(50)).toBeCloseTo(0.7, 12);
    // quarter: (1 - cos(pi/4)) / 2 of the way, slower than linear at the start
    expect(p(25)).toBeCloseTo(0.5 + 0.4 * (1 - Math.cos(Math.PI / 4)) / 2, 12);
    expect(p(25) - 0.5).toBeLessThan(0.4 * 0.25);
    expect(0.9 - p(75)).toBeLessThan(0.4 * 0.25);
    // symmetric about the midpoint
    expect(p(25) - 0.5).toBeCloseTo(0.9 - p(75), 12);
    // slope near the ends is small: the first step moves less than linear's
    expect(p(1) - p(0)).toBeLessThan(0.4 / 100);
  });

  test('step: equal jumps, flat in between', () => {
    const st = progressiveSchedule({ warmupSteps: 10, rampSteps: 100, curve: 'step', levels: 4, blockRatio: [1, 0.2] });
    const r = (step: number) => (st(step).blocks as { ratio: number }).ratio;
    const levels = [1, 0.8, 0.6, 0.4, 0.2];
    for (let step = 10; step <= 150; step++) {
      const k = Math.min(4, Math.floor(((step - 10) / 100) * 4));
      expect(r(step)).toBeCloseTo(levels[k], 12);
    }
    expect(new Set([10, 20, 34].map(r)).size).toBe(1);
    expect(r(35)).toBeCloseTo(0.8, 12);
    expect(r(109)).toBeCloseTo(0.4, 12);
    expect(r(110)).toBeCloseTo(0.2, 12);
    // default levels: 4
    const d = progressiveSchedule({ rampSteps: 100, curve: 'step', blockRatio: [1, 0.2] });
    expect((d(50).blocks as { ratio: number }).ratio).toBeCloseTo(0.6, 12);
    // levels 1 jumps once, at the end
    const one = progressiveSchedule({ rampSteps: 100, curve: 'step', levels: 1, blockRatio: [1, 0.2] });
    expect((one(99).blocks as { ratio: number }).ratio).toBe(1);
    expect((one(100).blocks as { ratio: number }).ratio).toBeCloseTo(0.2, 12);
  });

  test('window is rounded to an integer and never below 1', () => {
    const w = progressiveSchedule({ rampSteps: 4, window: [10, 1] });
    expect([0, 1, 2, 3, 4].map((step) => w(step).window)).toEqual([10, 8, 6, 3, 1]); // 10, 7.75, 5.5, 3.25, 1
    const frac = progressiveSchedule({ rampSteps: 10, window: [1.2, 1.4] });
    for (let step = 0; step <= 10; step++) expect(frac(step).window).toBe(1);
    for (let step = 0; step <= 10; step++) expect(Number.isInteger(progressiveSchedule({ rampSteps: 7, window: [100, 3] })(step).window)).toBe(true);
  });

  test('rampSteps 0 jumps to the end values at warm-up', () => {
    const z = progressiveSchedule({ warmupSteps: 5, rampSteps: 0, blockRatio: [1, 0.25], window: [100, 16] });
    expect(z(4)).toEqual({});
    expect(z(5)).toEqual({ blocks: { ratio: 0.25 }, window: 16 });
    expect(z(1000)).toEqual({ blocks: { ratio: 0.25 }, window: 16 });
    const z0 = progressiveSchedule({ rampSteps: 0, topKRatio: [1, 0.1] });
    expect(Object.keys(z0(0))).toEqual(['topKRatio']);
    expect(z0(0).topKRatio).toBeCloseTo(0.1, 15);
  });

  test('the end value is exactly the configured end (not start + (end - start) * 1 rounded)', () => {
    const s1 = progressiveSchedule({ rampSteps: 10, topKRatio: [1, 0.1], blockRatio: [0.9, 0.3] });
    expect(s1(10)).toEqual({ topKRatio: 0.1, blocks: { ratio: 0.3 } });
    expect(s1(20)).toEqual({ topKRatio: 0.1, blocks: { ratio: 0.3 } });
  });

  test('minBlocks/maxBlocks ride along in blocks; progressive gives blocks.progressive', () => {
    const p = progressiveSchedule({ rampSteps: 10, progressive: [0.99, 0.9], minBlocks: 1, maxBlocks: 8 });
    expect(p(0)).toEqual({ blocks: { progressive: 0.99, minBlocks: 1, maxBlocks: 8 } });
    expect(p(10).blocks).toEqual({ progressive: expect.closeTo(0.9, 12), minBlocks: 1, maxBlocks: 8 });
  });

  test('pure: same step, same result, in any order, with no state between calls', () => {
    const a = progressiveSchedule(config);
    const b = progressiveSchedule(config);
    const steps = [700, 0, 100, 1100, 600, 700, 3, 1100, 250];
    const first = steps.map((step) => a(step));
    const reversed = [...steps].reverse().map((step) => b(step)).reverse();
    expect(first).toEqual(reversed);
    expect(a(700)).toEqual(first[0]);
    // Returned objects are fresh: mutating one does not change later results.
    const o = a(600);
    (o.blocks as { ratio: number }).ratio = 0.01;
    o.window = 1;
    expect(a(600)).toEqual(b(600));
    expect((a(600).blocks as { ratio: number }).ratio).toBeCloseTo(0.6, 12);
  });

  test('the config is not kept by reference', () => {
    const cfg: ScheduleConfig = { rampSteps: 10, blockRatio: [1, 0.5] };
    const sch = progressiveSchedule(cfg);
    const before = sch(10);
    (cfg as unknown as { blockRatio: [number, number] }).blockRatio = [0.1, 0.1];
    cfg.rampSteps = 1000;
    expect(sch(10)).toEqual(before);
  });

  test('property: values stay between start and end for any ramp and step', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }),
        fc.nat(1000), fc.nat(1000), fc.constantFrom('linear', 'cosine', 'step'), fc.double({ min: 0, max: 3000, noNaN: true }),
        (a, b, warmupSteps, rampSteps, curve, step) => {
          const o = progressiveSchedule({ warmupSteps, rampSteps, curve: curve as 'linear', blockRatio: [a, b] })(step);
          if (step < warmupSteps) return expect(o).toEqual({});
          const r = (o.blocks as { ratio: number }).ratio;
          expect(r).toBeGreaterThanOrEqual(Math.min(a, b) - 1e-15);
          expect(r).toBeLessThanOrEqual(Math.max(a, b) + 1e-15);
          expect(r).toBeGreaterThanOrEqual(0);
          expect(r).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('bad configs are ERR_OPTION', () => {
  test.each([
    ['null', null, 'config'],
    ['a number', 5, 'config'],
    ['rampSteps missing', { blockRatio: [1, 0.5] }, 'rampSteps'],
    ['rampSteps -1', { rampSteps: -1, blockRatio: [1, 0.5] }, 'rampSteps'],
    ['rampSteps 1.5', { rampSteps: 1.5, blockRatio: [1, 0.5] }, 'rampSteps'],
    ['rampSteps NaN', { rampSteps: NaN, blockRatio: [1, 0.5] }, 'rampSteps'],
    ['rampSteps Infinity', { rampSteps: Infinity, blockRatio: [1, 0.5] }, 'rampSteps'],
    ['warmupSteps -1', { warmupSteps: -1, rampSteps: 10, blockRatio: [1, 0.5] }, 'warmupSteps'],
    ["warmupSteps '5'", { warmupSteps: '5', rampSteps: 10, blockRatio: [1, 0.5] }, 'warmupSteps'],
    ["curve 'exp'", { rampSteps: 10, curve: 'exp', blockRatio: [1, 0.5] }, 'curve'],
    ['levels 0', { rampSteps: 10, curve: 'step', levels: 0, blockRatio: [1, 0.5] }, 'levels'],
    ['levels 2.5', { rampSteps: 10, curve: 'step', levels: 2.5, blockRatio: [1, 0.5] }, 'levels'],
    ['blockRatio and progressive', { rampSteps: 10, blockRatio: [1, 0.5], progressive: [0.9, 0.95] }, 'progressive'],
    ['blockRatio of one value', { rampSteps: 10, blockRatio: [0.5] }, 'blockRatio'],
    ['blockRatio a number', { rampSteps: 10, blockRatio: 0.5 }, 'blockRatio'],
    ['blockRatio above 1', { rampSteps: 10, blockRatio: [1.5, 0.5] }, 'blockRatio[0]'],
    ['blockRatio NaN end', { rampSteps: 10, blockRatio: [1, NaN] }, 'blockRatio[1]'],
    ['progressive negative', { rampSteps: 10, progressive: [0.9, -0.1] }, 'progressive[1]'],
    ['topKRatio from 0', { rampSteps: 10, topKRatio: [0, 0.5] }, 'topKRatio'],
    ['topKRatio to 0', { rampSteps: 10, topKRatio: [1, 0] }, 'topKRatio'],
    ['window from 0', { rampSteps: 10, window: [0, 8] }, 'window[0]'],
    ['window Infinity', { rampSteps: 10, window: [Infinity, 8] }, 'window[0]'],
    ['nothing to move', { rampSteps: 10 }, 'config'],
    ['only constants', { rampSteps: 10, globalTokens: 4 }, 'config'],
    ['unknown key', { rampSteps: 10, blockRatio: [1, 0.5], ramp: 10 }, 'config.ramp'],
    ['globalTokens -1', { rampSteps: 10, blockRatio: [1, 0.5], globalTokens: -1 }, 'globalTokens'],
    ['minBlocks 1.5', { rampSteps: 10, blockRatio: [1, 0.5], minBlocks: 1.5 }, 'minBlocks'],
    ['maxBlocks -2', { rampSteps: 10, blockRatio: [1, 0.5], maxBlocks: -2 }, 'maxBlocks'],
  ] as [string, unknown, string][])('%s', (_label, config, argument) => {
    expectOptionError(() => progressiveSchedule(config as ScheduleConfig), argument);
  });

  test('minBlocks above maxBlocks is refused when the schedule is made (attention would refuse every step)', () => {
    expectOptionError(() => progressiveSchedule({ rampSteps: 10, blockRatio: [1, 0.5], minBlocks: 5, maxBlocks: 2 }));
  });

  test.each([
    ['NaN', NaN], ['-1', -1], ['Infinity', Infinity], ["'3'", '3'], ['undefined', undefined],
  ] as [string, unknown][])('step %s is ERR_OPTION', (_label, step) => {
    const s = progressiveSchedule({ rampSteps: 10, blockRatio: [1, 0.5] });
    expectOptionError(() => s(step as number), 'step');
  });
});

describe('every step gives options attention() accepts', () => {
  const shape = { batch: 1, heads: 2, kvHeads: 1, seqQ: 40, seqK: 48, headDim: 4 };
  const q = randomArray(1 * 2 * 40 * 4, 1);
  const k = randomArray(1 * 1 * 48 * 4, 2);
  const v = randomArray(1 * 1 * 48 * 4, 3);
  const configs: ScheduleConfig[] = [
    { warmupSteps: 3, rampSteps: 10, blockRatio: [1, 0], window: [64, 1], globalTokens: 2 },
    { rampSteps: 9, curve: 'cosine', progressive: [1, 0.5], minBlocks: 1, maxBlocks: 2, topKRatio: [1, 0.05] },
    { warmupSteps: 1, rampSteps: 12, curve: 'step', levels: 3, topKRatio: [0.9, 0.1] },
    { rampSteps: 0, window: [8, 2] },
    { rampSteps: 7, curve: 'cosine', blockRatio: [0.3, 1], globalTokens: 0, window: [1, 30] },
  ];

  test.each(configs.map((c, i) => [i, c] as const))('config %i, steps 0..ramp+warm-up+2 (and fractional steps)', async (_i, config) => {
    const s = progressiveSchedule(config);
    const last = (config.warmupSteps ?? 0) + config.rampSteps + 2;
    const steps: number[] = [];
    for (let step = 0; step <= last; step++) steps.push(step, step + 0.5);
    for (const step of steps) {
      const o = s(step);
      for (const causal of [false, true]) {
        const r = await attention(q, k, v, { shape, causal, blockSize: 16, ...o });
        expect(r.output).toHaveLength(q.length);
        expect(r.output.every(Number.isFinite)).toBe(true);
        if (Object.keys(o).length === 0) expect(r.layout).toBeUndefined();
      }
    }
  });

  test('property: any valid ramp gives accepted options at any step', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          ratio: fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })),
          topK: fc.tuple(fc.double({ min: 1e-6, max: 1, noNaN: true }), fc.double({ min: 1e-6, max: 1, noNaN: true })),
          window: fc.tuple(fc.double({ min: 1, max: 100, noNaN: true }), fc.double({ min: 1, max: 100, noNaN: true })),
          progressive: fc.boolean(),
          curve: fc.constantFrom('linear', 'cosine', 'step'),
          rampSteps: fc.nat(50),
          step: fc.double({ min: 0, max: 100, noNaN: true }),
        }),
        async (c) => {
          const s = progressiveSchedule({
            rampSteps: c.rampSteps, curve: c.curve as 'linear',
            ...(c.progressive ? { progressive: c.ratio } : { blockRatio: c.ratio }), topKRatio: c.topK, window: c.window,
          });
          const r = await attention(q, k, v, { shape, causal: true, blockSize: 16, ...s(c.step) });
          expect(r.output).toHaveLength(q.length);
        },
      ),
      { numRuns: 100 },
    );
  });
});
