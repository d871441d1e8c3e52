/**
 * The `psa` command: `psa info` (version, platform, each backend and why it is or is not
 * usable), `psa demo` (a planted-needle long-context case, dense against sparse) and
 * `psa profile` (one call's, or with --decode one decode step's, performance counters on the
 * emulated build).
 * `main` resolves to the exit code (0 ok, 1 error) and also sets `process.exitCode`.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { formatDemo, runDemo, DEMO_DEFAULTS } from './demo';
import { OptionError, PsaError } from './errors';
import { info } from './info';
import { DECODE_DEMO_DEFAULTS, formatDecodeDemo, runDecodeDemo } from './demo-decode';
import { join } from 'node:path';
import { reloadAddons } from './backends/device';
import { packageRoot } from './package-root';
import { formatProfile, PROFILE_DEFAULTS, runProfile } from './profile';
import { DECODE_PROFILE_DEFAULTS, formatDecodeProfile, runDecodeProfile } from './profile-decode';
import type { BackendName } from './types';

const BACKEND_ORDER = ['js', 'cpu', 'cuda', 'cuda-emu'];

function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected an integer >= 1');
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected an integer >= 0');
  return n;
}

function fraction(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !(n > 0 && n <= 1)) throw new InvalidArgumentError('expected a number in (0, 1]');
  return n;
}

interface ProfileCommandOptions {
  seq?: number;
  heads?: number;
  headDim: number;
  window?: number;
  globalTokens?: number;
  ratio?: number;
  progressive?: number;
  blockSize?: number;
  topK?: number;
  seed: number;
  json?: boolean;
  decode?: boolean;
  kvHeads?: number;
  pageSize?: number;
  estimate?: 'moment' | 'mean' | 'bound';
}

function formatInfo(): string {
  const i = info();
  const backends = [...i.backends].sort((a, b) => rank(a.name) - rank(b.name));
  const lines = [`psa-attention ${i.version} (node ${i.node}, ${i.platform})`, 'backends:'];
  for (const b of backends) {
    const dtypes = b.available ? ` [${b.dtypes.join(', ')}]` : '';
    lines.push(`  ${b.name.padEnd(9)} ${b.available ? 'yes' : 'no '}  ${b.reason}${dtypes}`);
  }
  lines.push(`auto -> ${i.autoBackend}`);
  if (!i.native.loaded) {
    lines.push(`native addon: none: ${i.native.reason}`);
    lines.push('  (npm may have skipped the install script: `npm install-scripts approve psa-attention` then `npm rebuild psa-attention`, or run `npx psa build`)');
  } else {
    const rt = i.native.runtime;
    lines.push(`native addon: ${i.native.path}`);
    if (!rt.compiled) lines.push('  CUDA: not compiled in');
    else {
      const v = (n: number) => (n ? `${Math.floor(n / 1000)}.${(n % 1000) / 10}` : 'none');
      lines.push(`  CUDA (${rt.flavor} build): runtime ${v(rt.runtimeVersion)}, driver ${v(rt.driverVersion)}, kernels for ${rt.targets}`);
    }
    for (const d of rt.devices) lines.push(`  device ${d.index}: ${d.name}, compute ${d.computeCapability}, ${d.multiprocessors} SMs, ${(d.freeMemory / 2 ** 30).toFixed(1)} of ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB free`);
    if (rt.error) lines.push(`  no device: ${rt.error.name} (${rt.error.code}): ${rt.error.message}`);
    if (rt.unusable) lines.push(`  device unusable for the rest of this process: ${rt.unusable.name}: ${rt.unusable.message}`);
  }
  return lines.join('\n');
}

function rank(name: string): number {
  const r = BACKEND_ORDER.indexOf(name);
  return r < 0 ? BACKEND_ORDER.length : r;
}

function program(): Command {
  const cmd = new Command('psa')
    .description('Progressive sparse attention for Node.js')
    .version(info().version)
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) });
  cmd
    .command('info')
    .description('version, platform, and each backend with why it is (not) available')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => {
      const i = info();
      const backends = [...i.backends].sort((a, b) => rank(a.name) - rank(b.name));
      process.stdout.write((opts.json ? JSON.stringify({ ...i, backends }, null, 2) : formatInfo()) + '\n');
    });
  cmd
    .command('demo')
    .description('a synthetic long-context case with a planted needle: dense against sparse attention (--decode: token generation against a paged cache)')
    .option('--heads <n>', 'attention heads', positiveInt, DEMO_DEFAULTS.heads)
    .option('--seq <n>', `sequence length (tokens; default ${DEMO_DEFAULTS.seq}, ${DECODE_DEMO_DEFAULTS.seq} with --decode)`, positiveInt)
    .option('--dim <n>', 'head dimension (1..256)', positiveInt, DEMO_DEFAULTS.dim)
    .option('--seed <n>', 'PRNG seed', positiveInt, DEMO_DEFAULTS.seed)
    .option('--decode', 'the decode scenario: generate tokens one at a time against the context in a KvCache')
    .option('--steps <n>', 'tokens to generate with --decode', positiveInt, DECODE_DEMO_DEFAULTS.steps)
    .addOption(new Option('--backend <name>', 'backend').choices(['auto', ...BACKEND_ORDER]).default('auto'))
    .option('--json', 'print the report as JSON')
    .action(async (opts: { heads: number; seq?: number; dim: number; seed: number; decode?: boolean; steps: number; backend: BackendName; json?: boolean }) => {
      if (opts.decode) {
        const progress = process.stderr.isTTY && !opts.json;
        const report = await runDecodeDemo({
          heads: opts.heads, seq: opts.seq ?? DECODE_DEMO_DEFAULTS.seq, dim: opts.dim, steps: opts.steps, seed: opts.seed,
          onStep: progress ? (t, n) => process.stderr.write(`\r  generating: token ${t} of ${n}${t === n ? '\n' : ''}`) : undefined,
        });
        process.stdout.write((opts.json ? JSON.stringify(report, null, 2) : formatDecodeDemo(report)) + '\n');
        return;
      }
      const report = await runDemo({ heads: opts.heads, seq: opts.seq ?? DEMO_DEFAULTS.seq, dim: opts.dim, seed: opts.seed, backend: opts.backend });
      process.stdout.write((opts.json ? JSON.stringify(report, null, 2) : formatDemo(report)) + '\n');
    });
  cmd
    .command('profile')
    .description("one attention call (--decode: one decode step against a paged cache) on the emulated build with its performance counters: shared bytes per FLOP, global bytes read, sector efficiency, bank conflicts, barriers per CTA, syncs and allocations per call")
    .option('--seq <n>', `sequence length (with --decode: cached tokens, default ${DECODE_PROFILE_DEFAULTS.seq})`, positiveInt)
    .option('--heads <n>', `attention heads (batch 1; default ${PROFILE_DEFAULTS.heads}, ${DECODE_PROFILE_DEFAULTS.heads} with --decode)`, positiveInt)
    .option('--head-dim <n>', 'head dimension (1..256)', positiveInt, PROFILE_DEFAULTS.headDim)
    .option('--window <n>', 'sparse: sliding window of n keys', nonNegativeInt)
    .option('--global-tokens <n>', 'sparse: the first n keys always allowed', nonNegativeInt)
    .option('--ratio <r>', 'sparse: blocks (pages) by ratio (0, 1]', fraction)
    .option('--progressive <p>', "sparse: blocks by progressive mass (0, 1], estimate 'bound' (--decode: PSA's rule, estimate 'moment')", fraction)
    .option('--block-size <n>', 'selection block size', positiveInt)
    .option('--top-k <k>', 'keep the k largest allowed scores of each row', positiveInt)
    .option('--decode', 'one decode step against a cuda-emu KvCache holding the demo\'s synthetic context')
    .option('--kv-heads <n>', `--decode: kv heads of the cache (default ${DECODE_PROFILE_DEFAULTS.kvHeads})`, positiveInt)
    .option('--page-size <n>', `--decode: tokens per page (default ${DECODE_PROFILE_DEFAULTS.pageSize})`, positiveInt)
    .addOption(new Option('--estimate <e>', '--decode: page estimate').choices(['moment', 'mean', 'bound']))
    .option('--seed <n>', 'PRNG seed', positiveInt, PROFILE_DEFAULTS.seed)
    .option('--json', 'print JSON')
    .action(async (opts: ProfileCommandOptions) => {
      const { json, decode, kvHeads, pageSize, estimate, ...o } = opts;
      if (decode) {
        if (o.blockSize !== undefined || o.topK !== undefined) throw new OptionError('--block-size and --top-k are attention options: a decode step selects pages of --page-size', o.blockSize !== undefined ? 'blockSize' : 'topK');
        const report = await runDecodeProfile({
          ...o, seq: o.seq ?? DECODE_PROFILE_DEFAULTS.seq, heads: o.heads ?? DECODE_PROFILE_DEFAULTS.heads, kvHeads: kvHeads ?? DECODE_PROFILE_DEFAULTS.kvHeads, pageSize, estimate,
        });
        process.stdout.write((json ? JSON.stringify(report, null, 2) : formatDecodeProfile(report)) + '\n');
        return;
      }
      if (kvHeads !== undefined || pageSize !== undefined || estimate !== undefined) throw new OptionError('--kv-heads, --page-size and --estimate need --decode', kvHeads !== undefined ? 'kvHeads' : pageSize !== undefined ? 'pageSize' : 'estimate');
      const report = await runProfile({ ...o, seq: o.seq ?? PROFILE_DEFAULTS.seq, heads: o.heads ?? PROFILE_DEFAULTS.heads });
      process.stdout.write((json ? JSON.stringify(report, null, 2) : formatProfile(report)) + '\n');
    });
  cmd
    .command('build')
    .description('build the native addon from source (needs cmake and a C++ compiler; CUDA kernels where nvcc is found)')
    .option('--cpu-only', 'leave the CUDA kernels out even where nvcc is found')
    .action((opts: { cpuOnly?: boolean }) => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const build = require(join(packageRoot(), 'scripts', 'addon-build.js')) as { missingTools(): string[]; compile(o: object): string; loads(f: string): boolean };
      const missing = build.missingTools();
      if (missing.length) throw new PsaError('ERR_BACKEND_UNAVAILABLE', `cannot build the native addon: ${missing.join(', ')} not found`);
      const file = build.compile({ cuda: opts.cpuOnly ? false : undefined });
      if (!build.loads(file)) throw new PsaError('ERR_INTERNAL', `${file} was built but does not load`);
      reloadAddons();
      process.stdout.write(`built ${file}\n${formatInfo()}\n`);
    });
  return cmd;
}

/** Run the CLI on `argv` (as `process.argv`: node, script, args...). Resolves to the exit code. */
export async function main(argv: readonly string[] = process.argv): Promise<number> {
  let code = 0;
  try {
    await program().parseAsync([...argv], { from: 'node' });
  } catch (err) {
    if (err instanceof CommanderError) {
      code = err.exitCode; // commander has printed its message (0 for --help / --version)
    } else if (err instanceof PsaError) {
      process.stderr.write(`${err.code}: ${err.message}\n`);
      code = 1;
    } else {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      code = 1;
    }
  }
  process.exitCode = code;
  return code;
}
