/**
 * A progressive sparsity schedule for training: a pure function from step to the sparse
 * options, moving each configured parameter from its start to its end value over
 * `rampSteps` after `warmupSteps` of dense attention.
 */
import { OptionError } from './errors';
import type { AttentionOptions } from './types';
import { checkInt, checkKeys, checkNumber, checkOneOf } from './validate';

export type ScheduleCurve = 'linear' | 'cosine' | 'step';

/** A parameter's [start, end]. */
type Ramp = readonly [number, number];

export interface ScheduleConfig {
  /** Steps of dense attention before sparsity begins. Default 0. */
  warmupSteps?: number;
  /** Steps from start to end values after warm-up (0 jumps straight to the end). */
  rampSteps: number;
  /** Default 'linear'. 'cosine' eases in and out; 'step' moves in `levels` equal jumps. */
  curve?: ScheduleCurve;
  /** Number of jumps for the 'step' curve. Default 4. */
  levels?: number;
  /** blocks.ratio from start to end (give at most one of blockRatio, progressive). */
  blockRatio?: Ramp;
  /** blocks.progressive threshold from start to end. */
  progressive?: Ramp;
  /** topKRatio from start to end. */
  topKRatio?: Ramp;
  /** Window size from start to end (rounded to an integer). */
  window?: Ramp;
  /** Constant sparse options added once sparsity begins. */
  globalTokens?: number;
  minBlocks?: number;
  maxBlocks?: number;
}

export type SparseOptions = Pick<AttentionOptions, 'blocks' | 'topKRatio' | 'window' | 'globalTokens'>;

export function progressiveSchedule(config: ScheduleConfig): (step: number) => SparseOptions {
  if (typeof config !== 'object' || config === null) throw new OptionError('schedule config must be an object', 'config');
  checkKeys('config', config, ['warmupSteps', 'rampSteps', 'curve', 'levels', 'blockRatio', 'progressive', 'topKRatio', 'window', 'globalTokens', 'minBlocks', 'maxBlocks']);
  const warmup = config.warmupSteps === undefined ? 0 : checkInt('warmupSteps', config.warmupSteps, 0, Number.MAX_SAFE_INTEGER);
  const ramp = checkInt('rampSteps', config.rampSteps, 0, Number.MAX_SAFE_INTEGER);
  const curve = checkOneOf<ScheduleCurve>('curve', config.curve, ['linear', 'cosine', 'step'], 'linear');
  const levels = config.levels === undefined ? 4 : checkInt('levels', config.levels, 1, 1_000_000);
  if (config.blockRatio && config.progressive) throw new OptionError('give blockRatio or progressive, not both', 'progressive');
  const ramps: Partial<Record<'blockRatio' | 'progressive' | 'topKRatio' | 'window', Ramp>> = {};
  for (const key of ['blockRatio', 'progressive', 'topKRatio', 'window'] as const) {
    const r = config[key];
    if (r === undefined) continue;
    if (!Array.isArray(r) || r.length !== 2) throw new OptionError(`${key} must be [start, end]`, key);
    const [lo, hi] = key === 'window' ? [1, 2 ** 31 - 1] : [0, 1];
    ramps[key] = [checkNumber(`${key}[0]`, r[0], lo, hi), checkNumber(`${key}[1]`, r[1], lo, hi)];
  }
  if (ramps.topKRatio && (ramps.topKRatio[0] === 0 || ramps.topKRatio[1] === 0)) throw new OptionError('topKRatio must be above 0', 'topKRatio');
  if (!Object.keys(ramps).length) throw new OptionError('schedule moves nothing: give blockRatio, progressive, topKRatio or window', 'config');
  const globalTokens = config.globalTokens === undefined ? undefined : checkInt('globalTokens', config.globalTokens, 0, 2 ** 31 - 1);
  const minBlocks = config.minBlocks === undefined ? undefined : checkInt('minBlocks', config.minBlocks, 0, 2 ** 31 - 1);
  const maxBlocks = config.maxBlocks === undefined ? undefined : checkInt('maxBlocks', config.maxBlocks, 0, 2 ** 31 - 1);
  if (minBlocks !== undefined && maxBlocks !== undefined && minBlocks > maxBlocks) throw new OptionError(`minBlocks (${minBlocks}) exceeds maxBlocks (${maxBlocks})`, 'minBlocks');

  return (step: number): SparseOptions => {
    checkNumber('step', step, 0, Number.MAX_SAFE_INTEGER);
    if (step < warmup) return {};
    const x = ramp === 0 ? 1 : Math.min(1, (step - warmup) / ramp);
    const f = curve === 'linear' ? x : curve === 'cosine' ? (1 - Math.cos(Math.PI * x)) / 2 : Math.floor(x * levels) / levels;
    const at = (r: Ramp) => r[0] * (1 - f) + r[1] * f; // exact at both ends
    const out: SparseOptions = {};
    const clamp = { ...(minBlocks !== undefined && { minBlocks }), ...(maxBlocks !== undefined && { maxBlocks }) };
    if (ramps.blockRatio) out.blocks = { ratio: at(ramps.blockRatio), ...clamp };
    if (ramps.progressive) out.blocks = { progressive: at(ramps.progressive), ...clamp };
    if (ramps.topKRatio) out.topKRatio = at(ramps.topKRatio);
    if (ramps.window) out.window = Math.max(1, Math.round(at(ramps.window)));
    if (globalTokens !== undefined) out.globalTokens = globalTokens;
    return out;
  };
}
