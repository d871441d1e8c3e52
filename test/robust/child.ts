/**
 * Runs one risky case in a child node process, so that a crash (a signal, an abort, a
 * sanitizer report) is a failed case, not the end of the run. The case is the body of an
 * async function; it sees `psa` (dist/lib), `native` (dist/lib/native), `tensorLib`
 * (dist/lib/tensor), `emu` (the emulated addon) and `collect()` (with exposeGc). What it returns, or
 * the error it throws, is printed as one OUTCOME line the parent reads back.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const root = join(__dirname, '..', '..');
const dist = join(root, 'dist', 'lib');

/** The coded error a case ended with. */
export interface CaseError {
  name: string;
  code?: string;
  argument?: string;
  message: string;
}

export type Outcome = { resolved: unknown } | { rejected: CaseError };

export interface ChildRun {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Null when the child died before printing one. */
  outcome: Outcome | null;
}

export interface ChildOptions {
  exposeGc?: boolean;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

const prelude = `
'use strict';
const psa = require(${JSON.stringify(dist)});
const native = require(${JSON.stringify(join(dist, 'native'))});
const tensorLib = require(${JSON.stringify(join(dist, 'tensor'))});
const emuState = native.loadEmuAddon();
if (!emuState.loaded) throw new Error('the emulated addon does not load: ' + emuState.reason);
const emu = emuState.addon;
const collect = () => globalThis.gc();
const coded = (e) => ({ name: e && e.name, code: e && e.code, argument: e && e.argument, message: String(e && e.message) });
const report = (o) => process.stdout.write('OUTCOME ' + JSON.stringify(o) + '\\n');
`;

/** Why the robust suites cannot run here (no built lib or no emulated addon), or null. */
export function missingBuild(): string | null {
  if (!existsSync(join(dist, 'index.js'))) return `${dist} is absent (npm run build makes it)`;
  const emu = process.env.PSA_EMU_ADDON_PATH ?? join(root, 'build-emu', 'Release', 'psa_attention.node');
  if (!existsSync(emu)) return `${emu} is absent (npm run build:emu makes it)`;
  return null;
}

export function runCase(body: string, options: ChildOptions = {}): ChildRun {
  const script = `${prelude}
(async () => { ${body} })().then(
  (v) => report({ resolved: v === undefined ? null : v }),
  (e) => report({ rejected: coded(e) }));`;
  const args = [...(options.exposeGc ? ['--expose-gc'] : []), '-e', script];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: options.env ?? process.env, timeout: options.timeoutMs ?? 60_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('OUTCOME '));
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, outcome: line ? (JSON.parse(line.slice(8)) as Outcome) : null };
}

/** The run as one value for toEqual: exit status, signal, what it printed that points at a crash, and the outcome. */
export function summary(run: ChildRun): { status: number | null; signal: string | null; crash: string | null; outcome: Outcome | null } {
  const crash = run.stderr.split('\n').find((l) => /AddressSanitizer|runtime error:|terminate called|Segmentation|Aborted|FATAL ERROR|core dumped/.test(l)) ?? null;
  return { status: run.status, signal: run.signal, crash, outcome: run.outcome };
}
