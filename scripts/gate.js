#!/usr/bin/env node
'use strict';
/**
 * CUDA compile gate. No GPU needed, only nvcc and g++.
 *
 * For every translation unit in cuda/gate.json and every target (sm_80/86/89/90):
 *   nvcc -std=c++17 -c -gencode arch=compute_XX,code=sm_XX
 *        -Xptxas -v,-warn-spills,-warn-lmem-usage,-Werror -I cuda [-D...] <unit>
 * (the ptxas options of the CMake build, where a spill fails the build too) fails on any
 * spill, local memory or stack frame, parses ptxas -v per kernel (registers, barriers, static
 * smem, spills, stack, constant memory), computes CTAs per SM with cuda_occupancy.h
 * (scripts/occupancy.cc, built here with g++) at each kernel's threads and dynamic shared
 * memory, which the manifest names as C++ constants of the kernels' traits (evaluated here with
 * g++), and checks the PTX of `nvcc -ptx -arch=compute_80` for the instructions each unit must
 * contain.
 *
 *   node scripts/gate.js           regenerate cuda/RESOURCES.md: compile the units whose inputs
 *                                  changed since it was generated (each section records a
 *                                  fingerprint of the unit's files, the manifest entry and the
 *                                  toolkit) and the manifest's "verify" units; keep the other
 *                                  sections as they are
 *   node scripts/gate.js --check   the same compiles, then
 *                                  fail if cuda/RESOURCES.md disagrees with this run on what the
 *                                  code fixes (kernels, threads, shared memory, barriers, spills,
 *                                  stack, PTX instructions) or if a kernel's CTAs per SM fell;
 *                                  registers, constant memory and PTX line counts vary with the
 *                                  toolkit and are only reported
 *
 *   --full (or PSA_GATE_FULL=1)    compile every unit, keep nothing
 *
 * Environment: NVCC (default: nvcc on PATH), CXX (default: g++), PSA_GATE_JOBS (default 2).
 */
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');

const ROOT = path.resolve(__dirname, '..');
const MANIFEST = 'cuda/gate.json';
const REPORT = 'cuda/RESOURCES.md';
const PTXAS_OPTIONS = '-v,-warn-spills,-warn-lmem-usage,-Werror';
const DEFAULT_FLAGS = ['-std=c++17', '-I', 'cuda'];

// ---------------------------------------------------------------------------------------------
// ptxas -v parser

/**
 * Parses the `-Xptxas -v` output of one compilation. Returns the entry functions (kernels) in
 * the order ptxas reported them, non-entry functions that have a property line, and the
 * ptxas warnings/errors.
 *
 * Lines it understands (CUDA 11-13):
 *   ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_80'
 *   ptxas info    : Function properties for _Z3fooPf
 *       16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
 *   ptxas info    : Used 32 registers, used 1 barriers, 16 bytes cumulative stack size,
 *                   4096 bytes smem, 372 bytes cmem[0], 8 bytes cmem[2]
 *   ptxas error   : Local memory used for function '_Z3fooPf', size of stack frame: 16 bytes
 */
function parsePtxasOutput(text) {
  const kernels = [];
  const byName = new Map();
  const functions = new Map();
  const diagnostics = [];
  let current = null; // entry function whose "Used ..." line comes next
  let propsFor = null; // function whose "N bytes stack frame" line comes next

  const record = (name, target) => {
    let k = byName.get(name);
    if (!k) {
      k = {
        name,
        target: target || null,
        registers: 0,
        barriers: 0,
        staticSmem: 0,
        cmem: {},
        stackFrame: 0,
        spillStores: 0,
        spillLoads: 0,
        cumulativeStack: 0,
      };
      byName.set(name, k);
      kernels.push(k);
    }
    return k;
  };

  for (const raw of String(text).split(/\r?\n/)) {
    const line = raw.trim();
    let m;
    if ((m = /^ptxas\s+(error|warning|fatal)\s*:\s*(.*)$/.exec(line))) {
      diagnostics.push({ level: m[1], message: m[2] });
      continue;
    }
    if ((m = /Compiling entry function '([^']+)'(?: for '([^']+)')?/.exec(line))) {
      current = record(m[1], m[2]);
      propsFor = null;
      continue;
    }
    if ((m = /Function properties for (\S+)/.exec(line))) {
      propsFor = m[1];
      continue;
    }
    if ((m = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line))) {
      const props = { stackFrame: +m[1], spillStores: +m[2], spillLoads: +m[3] };
      const target = propsFor && byName.get(propsFor);
      if (target) Object.assign(target, props);
      else if (propsFor) functions.set(propsFor, { name: propsFor, ...props });
      propsFor = null;
      continue;
    }
    if (/^ptxas info\s*:\s*Used \d+ registers/.test(line) && current) {
      const num = (re) => {
        const r = re.exec(line);
        return r ? +r[1] : 0;
      };
      current.registers = num(/Used (\d+) registers/);
      current.barriers = num(/used (\d+) barriers/);
      current.staticSmem = num(/(\d+) bytes smem/);
      current.cumulativeStack = num(/(\d+) bytes cumulative stack size/);
      const cmem = {};
      for (const c of line.matchAll(/(\d+) bytes cmem\[(\d+)\]/g)) cmem[+c[2]] = +c[1];
      current.cmem = cmem;
      current = null;
    }
  }
  return { kernels, functions: [...functions.values()], diagnostics };
}

// ---------------------------------------------------------------------------------------------
// Tools

let demangleAvailable;
/** Demangles names with c++filt; returns them unchanged where c++filt is missing. */
function demangle(names) {
  const unique = [...new Set(names)];
  const out = new Map(unique.map((n) => [n, n]));
  if (unique.length === 0 || demangleAvailable === false) return out;
  const r = spawnSync('c++filt', [], { input: unique.join('\n') + '\n', encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    demangleAvailable = false;
    return out;
  }
  demangleAvailable = true;
  const lines = r.stdout.split('\n');
  unique.forEach((n, i) => out.set(n, lines[i] && lines[i].trim() ? lines[i].trim() : n));
  return out;
}

function nvccPath() {
  return process.env.NVCC || 'nvcc';
}

/** True where nvcc runs. */
function haveNvcc() {
  const r = spawnSync(nvccPath(), ['--version'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
}

/** The first lines of a compiler's output (the first error is usually the cause), indented. */
function excerpt(text, max = 20) {
  const lines = String(text).trim().split('\n');
  const head = lines.slice(0, max).join('\n    ');
  return lines.length > max ? `${head}\n    ... (${lines.length - max} more lines)` : head;
}

/** Runs a command; resolves with { code, stdout, stderr, ms } (never rejects on exit code). */
function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let stdout = '';
    let stderr = '';
    let child;
    try {
      child = spawn(cmd, args, { cwd: opts.cwd || ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      resolve({ code: -1, stdout, stderr: String(e), ms: 0 });
      return;
    }
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (e) => resolve({ code: -1, stdout, stderr: stderr + String(e), ms: Date.now() - t0 }));
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - t0 }));
  });
}

/** Runs async task factories with at most `limit` in flight; keeps result order. */
async function pool(tasks, limit) {
  const results = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, tasks.length)) }, worker));
  return results;
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'psa-gate-'));
}

function ccOf(target) {
  const m = /^sm_(\d+)(\d)$/.exec(target);
  if (!m) throw new Error(`bad target '${target}' (expected sm_XY)`);
  return { major: +m[1], minor: +m[2], arch: `compute_${m[1]}${m[2]}` };
}

// ---------------------------------------------------------------------------------------------
// Compile one unit for one target

/**
 * Compiles `source` for `target` with the gate's ptxas options and checks the result.
 * Resolves with { source, target, ok, code, ms, output, kernels, problems }: kernels carry the
 * parsed ptxas numbers plus `demangled`; problems are messages naming kernel and target.
 */
async function compileUnit({ source, target, defines = [], flags = DEFAULT_FLAGS, cwd = ROOT, outDir }) {
  const { arch } = ccOf(target);
  const dir = outDir || tempDir();
  const obj = path.join(dir, `${path.basename(source).replace(/\W/g, '_')}.${target}.o`);
  const args = [
    ...flags,
    '-c',
    '-gencode',
    `arch=${arch},code=${target}`,
    '-Xptxas',
    PTXAS_OPTIONS,
    ...defines.map((d) => `-D${d}`),
    source,
    '-o',
    obj,
  ];
  const r = await run(nvccPath(), args, { cwd });
  if (!outDir) fs.rmSync(dir, { recursive: true, force: true });
  const output = r.stdout + r.stderr;
  const parsed = parsePtxasOutput(output);
  const names = demangle([...parsed.kernels.map((k) => k.name), ...parsed.functions.map((f) => f.name)]);
  const kernels = parsed.kernels.map((k) => ({ ...k, demangled: names.get(k.name) }));
  const problems = [];
  const where = `${source} [${target}]`;
  for (const k of kernels) {
    const what = [];
    if (k.spillStores > 0 || k.spillLoads > 0)
      what.push(`spills (${k.spillStores} bytes stores, ${k.spillLoads} bytes loads)`);
    if (k.stackFrame > 0) what.push(`local memory: stack frame ${k.stackFrame} bytes`);
    else if (k.cumulativeStack > 0) what.push(`local memory: cumulative stack ${k.cumulativeStack} bytes`);
    if (what.length) problems.push(`${where} kernel '${k.demangled}': ${what.join('; ')}`);
  }
  for (const f of parsed.functions) {
    if (f.spillStores > 0 || f.spillLoads > 0 || f.stackFrame > 0)
      problems.push(
        `${where} function '${names.get(f.name)}': stack frame ${f.stackFrame} bytes, ` +
          `spills ${f.spillStores}/${f.spillLoads} bytes (stores/loads)`,
      );
  }
  if (r.code !== 0) {
    // ptxas -Werror turns the spill / local-memory warnings into errors: those are reported
    // per kernel above already; keep the rest.
    const flagged = kernels.filter((k) => k.spillStores || k.spillLoads || k.stackFrame || k.cumulativeStack).map((k) => k.name);
    const other = parsed.diagnostics.filter((d) => !(/local memory|spill/i.test(d.message) && flagged.some((n) => d.message.includes(n))));
    const diags = other.map((d) => {
      let msg = d.message;
      for (const [m, dm] of names) msg = msg.split(m).join(dm);
      return `ptxas ${d.level}: ${msg}`;
    });
    if (diags.length === 0 && parsed.diagnostics.length > 0 && problems.length > 0)
      return { source, target, ok: false, code: r.code, ms: r.ms, output, kernels, problems };
    const detail = diags.length ? diags.join('\n    ') : excerpt(output);
    problems.push(`${where}: nvcc exited with ${r.code}\n    ${detail}`);
  }
  return { source, target, ok: problems.length === 0, code: r.code, ms: r.ms, output, kernels, problems };
}

/**
 * The PTX between each pair of `// psa-region-begin <name>` / `// psa-region-end <name>` comments
 * (PSA_PTX_REGION in cuda/primitives.cuh), one pair per copy the compiler made of the region:
 * instruction lines and conditional branches (`@%p bra`) in each copy.
 */
function measureRegions(ptx, regions) {
  const lines = ptx.split('\n');
  const out = {};
  for (const r of regions) {
    const copies = [];
    let current = null;
    for (const l of lines) {
      if (l.includes(`// psa-region-begin ${r.name}`)) current = { instructions: 0, branches: 0 };
      else if (l.includes(`// psa-region-end ${r.name}`) && current) {
        copies.push(current);
        current = null;
      } else if (current) {
        const t = l.trim();
        if (t === '' || t.startsWith('//') || t.startsWith('.') || t.startsWith('$') || t === '{' || t === '}') continue;
        current.instructions++;
        if (/^@!?%p\d+\s+bra/.test(t)) current.branches++;
      }
    }
    out[r.name] = copies;
  }
  return out;
}

/** Compiles `source` to PTX for `ptxArch` and counts the lines holding each instruction, and the marked regions' instructions. */
async function checkPtx({ source, instructions, regions = [], ptxArch = 'compute_80', defines = [], flags = DEFAULT_FLAGS, cwd = ROOT }) {
  const dir = tempDir();
  const ptxFile = path.join(dir, 'unit.ptx');
  const r = await run(nvccPath(), [...flags, '-ptx', `-arch=${ptxArch}`, ...defines.map((d) => `-D${d}`), source, '-o', ptxFile], { cwd });
  const ptx = r.code === 0 && fs.existsSync(ptxFile) ? fs.readFileSync(ptxFile, 'utf8') : null;
  fs.rmSync(dir, { recursive: true, force: true });
  const problems = [];
  if (ptx === null) {
    problems.push(`${source} [${ptxArch}]: nvcc -ptx exited with ${r.code}\n    ${excerpt(r.stdout + r.stderr)}`);
    return { source, ok: false, counts: {}, problems, ms: r.ms };
  }
  const counts = {};
  for (const ins of instructions) {
    const re = new RegExp(`(^|[\\s{;])${ins.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?=[.\\s;])`);
    counts[ins] = ptx.split('\n').filter((l) => re.test(l)).length;
    if (counts[ins] === 0) problems.push(`${source} [${ptxArch}]: PTX instruction '${ins}' missing`);
  }
  const measured = measureRegions(ptx, regions);
  for (const reg of regions) {
    const copies = measured[reg.name];
    if (copies.length === 0) problems.push(`${source} [${ptxArch}]: PTX region '${reg.name}' missing (PSA_PTX_REGION markers)`);
    const worst = Math.max(0, ...copies.map((c) => c.branches));
    if (worst > reg.maxBranches) problems.push(`${source} [${ptxArch}]: PTX region '${reg.name}' has ${worst} conditional branches (at most ${reg.maxBranches})`);
  }
  return { source, ok: problems.length === 0, counts, regions: measured, problems, ms: r.ms };
}

// ---------------------------------------------------------------------------------------------
// Occupancy helper

function cudaIncludeDir() {
  const has = (d) => d && fs.existsSync(path.join(d, 'cuda_occupancy.h'));
  const r = spawnSync(nvccPath(), ['--dryrun', '-c', '-x', 'cu', os.devNull, '-o', path.join(os.tmpdir(), 'psa-gate-dryrun.o')], { encoding: 'utf8' });
  const text = `${r.stdout || ''}${r.stderr || ''}`;
  for (const m of text.matchAll(/INCLUDES="([^"]*)"/g)) {
    for (const inc of m[1].matchAll(/-I"?([^"\s]+)"?/g)) if (has(inc[1])) return path.resolve(inc[1]);
  }
  const w = spawnSync('sh', ['-c', `command -v "${nvccPath()}"`], { encoding: 'utf8' });
  if (w.status === 0 && w.stdout.trim()) {
    const bin = path.dirname(fs.realpathSync(w.stdout.trim()));
    const candidates = [path.join(bin, '../include')];
    const targets = path.join(bin, '../targets');
    if (fs.existsSync(targets)) for (const t of fs.readdirSync(targets).sort()) candidates.push(path.join(targets, t, 'include'));
    for (const c of candidates) if (has(c)) return path.resolve(c);
  }
  if (has('/usr/local/cuda/include')) return '/usr/local/cuda/include';
  throw new Error('cuda_occupancy.h not found (looked in nvcc --dryrun INCLUDES, <nvcc>/../include, /usr/local/cuda/include)');
}

/** Builds scripts/occupancy.cc into `dir`; returns the binary's path. */
function buildOccupancy(dir) {
  const exe = path.join(dir, 'occupancy');
  const cxx = process.env.CXX || 'g++';
  const r = spawnSync(cxx, ['-std=c++17', '-O1', '-I', cudaIncludeDir(), path.join(__dirname, 'occupancy.cc'), '-o', exe], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`building scripts/occupancy.cc failed:\n${r.stderr || r.error}`);
  return exe;
}

/**
 * The manifest's launch shapes: `threads` and `smem` of each kernel entry are numbers or C++
 * constant expressions over the unit's `headers` (pure C++ headers under cuda/, such as the
 * kernels' traits). Evaluates every expression in one host program built in `dir`; returns a
 * Map from expression to value.
 */
function evaluateConstants(units, dir) {
  const headers = new Set();
  const exprs = new Set();
  for (const u of units) {
    for (const h of u.headers || []) headers.add(h);
    for (const k of u.kernels || []) for (const v of [k.threads, k.smem]) if (typeof v === 'string') exprs.add(v);
  }
  const values = new Map();
  if (exprs.size === 0) return values;
  const list = [...exprs];
  const src = path.join(dir, 'launch_shapes.cc');
  const exe = path.join(dir, 'launch_shapes');
  fs.writeFileSync(
    src,
    [...[...headers].map((h) => `#include "${h}"`), '#include <cstdio>', 'int main() {', ...list.map((e) => `  std::printf("%lld\\n", static_cast<long long>(${e}));`), '}', ''].join('\n'),
  );
  const cxx = process.env.CXX || 'g++';
  const built = spawnSync(cxx, ['-std=c++17', '-I', path.join(ROOT, 'cuda'), src, '-o', exe], { encoding: 'utf8' });
  if (built.error || built.status !== 0) throw new Error(`evaluating the launch shapes of ${MANIFEST} failed:\n${built.stderr || built.error}`);
  const out = spawnSync(exe, [], { encoding: 'utf8' }).stdout.trim().split('\n');
  list.forEach((e, i) => values.set(e, Number(out[i])));
  return values;
}

/** Threads and dynamic shared memory of a manifest kernel entry. */
function launchShape(spec, constants) {
  const value = (v) => (typeof v === 'string' ? constants.get(v) : v || 0);
  return { threads: value(spec.threads), dynamicSmem: value(spec.smem) };
}

function occupancy(exe, target, k, threads, dynamicSmem) {
  const { major, minor } = ccOf(target);
  const args = [major, minor, k.registers, k.staticSmem, dynamicSmem, threads, k.barriers].map(String);
  const r = spawnSync(exe, args, { encoding: 'utf8' });
  const m = /^(\d+) (\S+)/.exec(r.stdout || '');
  if (r.status !== 0 || !m) throw new Error(`occupancy ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return { ctasPerSm: +m[1], limitedBy: m[2] };
}

// ---------------------------------------------------------------------------------------------
// Gate

function loadManifest(file = path.join(ROOT, MANIFEST)) {
  const m = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (!Array.isArray(m.targets) || !Array.isArray(m.units)) throw new Error(`${MANIFEST}: needs "targets" and "units"`);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Unit fingerprints: what a unit's figures depend on, so `--check` recompiles only what changed

/**
 * The repository files `source` includes, itself first, then transitively: quoted includes,
 * resolved against the including file's folder and then each `-I` folder of `flags` (as nvcc
 * does). Angle-bracket and unresolved includes are the toolkit's, covered by its version.
 */
function unitInputs(source, flags = DEFAULT_FLAGS, extraHeaders = [], cwd = ROOT) {
  const dirs = [];
  for (let i = 0; i < flags.length; i++) {
    if (flags[i] === '-I' && i + 1 < flags.length) dirs.push(path.resolve(cwd, flags[++i]));
    else if (flags[i].startsWith('-I') && flags[i].length > 2) dirs.push(path.resolve(cwd, flags[i].slice(2)));
  }
  const seen = new Set();
  const order = [];
  const visit = (file) => {
    if (seen.has(file)) return;
    seen.add(file);
    order.push(file);
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^\s*#\s*include\s*"([^"]+)"/gm)) {
      const found = [path.dirname(file), ...dirs].map((d) => path.join(d, m[1])).find((f) => fs.existsSync(f));
      if (found) visit(path.resolve(found));
    }
  };
  visit(path.resolve(cwd, source));
  for (const h of extraHeaders) {
    const found = dirs.map((d) => path.join(d, h)).find((f) => fs.existsSync(f));
    if (found) visit(path.resolve(found));
  }
  return order.map((f) => path.relative(cwd, f));
}

let toolkitId = null;
/** nvcc's and the host compiler's versions and this script: a change in any of them can move every figure. */
function toolkitIdentity() {
  if (toolkitId === null) {
    const version = (cmd) => {
      const r = spawnSync(cmd, ['--version'], { encoding: 'utf8' });
      return r.error ? `${cmd}: none` : r.stdout;
    };
    toolkitId = [version(nvccPath()), version(process.env.CXX || 'g++'), fs.readFileSync(__filename, 'utf8')].join('\0');
  }
  return toolkitId;
}

/**
 * A short hash of everything a unit's section of the report depends on: the toolkit, the
 * manifest's targets, flags and PTX arch, the unit's own manifest entry, and the path and text of
 * every repository file it includes. Equal fingerprints mean the compile would print the same.
 */
function unitFingerprint(manifest, unit, { cwd = ROOT, toolkit = toolkitIdentity() } = {}) {
  const flags = manifest.flags || DEFAULT_FLAGS;
  const h = crypto.createHash('sha256');
  h.update(toolkit);
  h.update(JSON.stringify({ targets: manifest.targets, flags, ptxArch: manifest.ptxArch || 'compute_80', unit }));
  const files = unitInputs(unit.source, flags, unit.headers || [], cwd);
  for (const f of files) h.update(`\0${f}\0`).update(fs.readFileSync(path.join(cwd, f)));
  return { fingerprint: h.digest('hex').slice(0, 16), files };
}

/** The report's sections by unit source: the lines from `## <source>` up to the next unit's. */
function reportSections(text) {
  const sections = new Map();
  let current = null;
  for (const line of String(text).split('\n')) {
    if (line.startsWith('## ')) sections.set(line.slice(3), (current = [line]));
    else if (current) current.push(line);
  }
  for (const lines of sections.values()) while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return sections;
}

const FINGERPRINT_LINE = /^Inputs: `([0-9a-f]{16})`/;

/**
 * Which units the gate must compile: those whose fingerprint differs from the one their
 * committed section records, those the manifest names under "verify" (so every check shows the
 * recorded figures reproduce with this toolkit), or all with `full`. Returns { reuse, compile }:
 * reuse maps a source to its committed section lines.
 */
function planCompiles(manifest, committed, { full = false, cwd = ROOT, toolkit } = {}) {
  const sections = reportSections(committed || '');
  const verify = new Set(manifest.verify || []);
  const reuse = new Map();
  const compile = [];
  for (const u of manifest.units) {
    if (!fs.existsSync(path.join(cwd, u.source))) continue;
    const lines = sections.get(u.source);
    const recorded = lines && lines.map((l) => FINGERPRINT_LINE.exec(l)).find(Boolean);
    const now = unitFingerprint(manifest, u, { cwd, toolkit }).fingerprint;
    if (!full && !verify.has(u.source) && recorded && recorded[1] === now) reuse.set(u.source, lines);
    else compile.push(u.source);
  }
  return { reuse, compile };
}

/**
 * Runs the whole gate; resolves with { problems, notes, units, report }. Units in `reuse`
 * (source -> committed section lines, from planCompiles) are not compiled: their section is kept.
 */
async function runGate({ manifest = loadManifest(), jobs = Number(process.env.PSA_GATE_JOBS) || 2, log = () => {}, reuse = new Map() } = {}) {
  const flags = manifest.flags || DEFAULT_FLAGS;
  const ptxArch = manifest.ptxArch || 'compute_80';
  const notes = [];
  const present = [];
  const units = [];
  for (const u of manifest.units) {
    if (!fs.existsSync(path.join(ROOT, u.source))) {
      if (u.optional) {
        const note = `${u.source}: not present yet, skipped (optional in ${MANIFEST})`;
        notes.push(note);
        log(`note: ${note}`);
        units.push({ unit: u, skipped: true });
        continue;
      }
      units.push({ unit: u, skipped: true, missing: true });
      continue;
    }
    if (reuse.has(u.source)) {
      units.push({ unit: u, reused: reuse.get(u.source) });
      continue;
    }
    present.push(u);
  }

  const tasks = [];
  for (const u of present) {
    const defines = u.defines || [];
    for (const target of manifest.targets)
      tasks.push(async () => {
        const r = await compileUnit({ source: u.source, target, defines, flags });
        log(`${r.ok ? 'ok  ' : 'FAIL'} ${u.source} ${target} (${r.kernels.length} kernels, ${(r.ms / 1000).toFixed(1)} s)`);
        return { kind: 'compile', unit: u, result: r };
      });
    if ((u.ptx || []).length || (u.regions || []).length)
      tasks.push(async () => {
        const r = await checkPtx({ source: u.source, instructions: u.ptx || [], regions: u.regions || [], ptxArch, defines, flags });
        log(`${r.ok ? 'ok  ' : 'FAIL'} ${u.source} ptx ${ptxArch} (${(r.ms / 1000).toFixed(1)} s)`);
        return { kind: 'ptx', unit: u, result: r };
      });
  }
  const done = await pool(tasks, jobs);

  const problems = [];
  for (const u of units) if (u.missing) problems.push(`${u.unit.source}: listed in ${MANIFEST} but missing`);
  const occDir = tempDir();
  try {
    const exe = present.length ? buildOccupancy(occDir) : null;
    const constants = evaluateConstants(present, occDir);
    for (const u of present) {
      const entry = { unit: u, skipped: false, ptx: null, kernels: new Map(), inputs: unitFingerprint(manifest, u) };
      units.push(entry);
      const matchedEntries = new Set();
      for (const d of done.filter((x) => x.unit === u)) {
        if (d.kind === 'ptx') {
          entry.ptx = d.result;
          problems.push(...d.result.problems);
          continue;
        }
        const r = d.result;
        problems.push(...r.problems);
        for (const k of r.kernels) {
          const specs = (u.kernels || []).filter((s) => k.demangled.includes(s.match));
          if (specs.length !== 1) {
            problems.push(
              specs.length === 0
                ? `${u.source} [${r.target}] kernel '${k.demangled}': no entry in ${MANIFEST} matches it (add threads/dynamicSmem)`
                : `${u.source} [${r.target}] kernel '${k.demangled}': matched by ${specs.length} entries in ${MANIFEST} (${specs.map((s) => `'${s.match}'`).join(', ')})`,
            );
            continue;
          }
          const spec = specs[0];
          matchedEntries.add(spec);
          const shape = launchShape(spec, constants);
          let occ;
          try {
            occ = occupancy(exe, r.target, k, shape.threads, shape.dynamicSmem);
          } catch (e) {
            problems.push(`${u.source} [${r.target}] kernel '${k.demangled}': ${e.message}`);
            continue;
          }
          if (occ.ctasPerSm === 0)
            problems.push(`${u.source} [${r.target}] kernel '${k.demangled}': 0 CTAs per SM (${shape.threads} threads, ${shape.dynamicSmem} B dynamic smem cannot launch)`);
          if (!entry.kernels.has(k.demangled)) entry.kernels.set(k.demangled, new Map());
          entry.kernels.get(k.demangled).set(r.target, { ...k, ...shape, ...occ });
        }
      }
      for (const s of u.kernels || [])
        if (!matchedEntries.has(s) && done.some((x) => x.unit === u && x.kind === 'compile' && x.result.code === 0))
          problems.push(`${u.source}: ${MANIFEST} entry '${s.match}' matches no kernel`);
    }
  } finally {
    fs.rmSync(occDir, { recursive: true, force: true });
  }
  units.sort((a, b) => (a.unit.source < b.unit.source ? -1 : a.unit.source > b.unit.source ? 1 : 0));
  const report = renderReport({ manifest, units });
  return { problems, notes, units, report };
}

function renderReport({ manifest, units }) {
  const flags = (manifest.flags || DEFAULT_FLAGS).join(' ');
  const ptxArch = manifest.ptxArch || 'compute_80';
  const L = [];
  L.push('# CUDA kernel resources');
  L.push('');
  L.push('<!-- GENERATED FILE: do not edit. Regenerate with `npm run gate`; CI runs `node scripts/gate.js --check`. -->');
  L.push('');
  L.push(`Generated by \`npm run gate\` (scripts/gate.js) from \`${MANIFEST}\`. Do not edit by hand:`);
  L.push('`node scripts/gate.js --check` fails when what the code fixes differs from what the gate generates');
  L.push('(kernels, threads, shared memory, barriers, spills, stack, required PTX) or when CTAs/SM fall.');
  L.push('Registers, constant memory and PTX line counts depend on the toolkit that generated this file.');
  L.push('Each unit records the fingerprint of its inputs; the gate compiles the units whose inputs changed');
  L.push(`and those the manifest names under "verify" (${(manifest.verify || []).map((v) => `\`${v}\``).join(', ') || 'none'}), and keeps the other sections (\`--full\` compiles all).`);
  L.push('');
  L.push(`- compile: \`nvcc ${flags} -c -gencode arch=compute_XX,code=sm_XX -Xptxas ${PTXAS_OPTIONS}\` for ${manifest.targets.map((t) => `\`${t}\``).join(', ')}; any spill, local memory or stack frame fails the gate`);
  L.push(`- PTX check: \`nvcc ${flags} -ptx -arch=${ptxArch}\`, lines holding each required instruction; in marked regions, instructions and conditional branches (a branch count above the manifest's bound fails the gate)`);
  L.push('- CTAs/SM: `cudaOccMaxActiveBlocksPerMultiprocessor` (cuda_occupancy.h, via scripts/occupancy.cc) at the maximum shared-memory carveout; threads and dynamic smem per kernel from the kernel traits the manifest names');
  L.push('- smem and stack in bytes; cmem: constant bank[bytes]');
  for (const u of units) {
    L.push('');
    if (u.reused) {
      L.push(...u.reused);
      continue;
    }
    L.push(`## ${u.unit.source}`);
    L.push('');
    if (u.skipped) {
      L.push(u.missing ? 'Missing: listed in the manifest but not present.' : 'Skipped: not present when this report was generated (optional in the manifest).');
      continue;
    }
    L.push(`Inputs: \`${u.inputs.fingerprint}\` (${u.inputs.files.length} repository files, the manifest entry, the toolkit's versions and scripts/gate.js)`);
    L.push('');
    const ins = u.unit.ptx || [];
    if (ins.length === 0) L.push(`PTX instructions required: none.`);
    else {
      L.push(`PTX instructions required (\`-arch=${ptxArch}\`):`);
      L.push('');
      L.push('| instruction | PTX lines | result |');
      L.push('| --- | ---: | --- |');
      for (const i of [...ins].sort()) {
        const n = u.ptx && u.ptx.counts[i] !== undefined ? u.ptx.counts[i] : 0;
        L.push(`| \`${i}\` | ${n} | ${n > 0 ? 'present' : 'MISSING'} |`);
      }
    }
    const regions = u.unit.regions || [];
    if (regions.length) {
      L.push('');
      L.push('Marked PTX regions (one copy per instantiation; instructions per score: per copy over the scores one lane handles there):');
      L.push('');
      L.push('| region | copies | PTX instructions | per score | conditional branches |');
      L.push('| --- | ---: | ---: | ---: | ---: |');
      for (const reg of regions) {
        const copies = (u.ptx && u.ptx.regions && u.ptx.regions[reg.name]) || [];
        const ins = copies.map((c) => c.instructions);
        const lo = Math.min(...ins);
        const hi = Math.max(...ins);
        const range = copies.length ? (lo === hi ? `${lo}` : `${lo}-${hi}`) : '-';
        const per = copies.length ? (lo === hi ? (lo / reg.scoresPerLane).toFixed(2) : `${(lo / reg.scoresPerLane).toFixed(2)}-${(hi / reg.scoresPerLane).toFixed(2)}`) : '-';
        L.push(`| region \`${reg.name}\` | ${copies.length} | ${range} | ${per} | ${Math.max(0, ...copies.map((c) => c.branches))} |`);
      }
    }
    for (const name of [...u.kernels.keys()].sort()) {
      L.push('');
      L.push(`### \`${name}\``);
      L.push('');
      L.push('| target | registers | barriers | static smem | dynamic smem | spill st/ld | stack | cmem | threads | CTAs/SM | limited by |');
      L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |');
      const perTarget = u.kernels.get(name);
      for (const t of [...perTarget.keys()].sort()) {
        const k = perTarget.get(t);
        const cmem = Object.keys(k.cmem).map(Number).sort((a, b) => a - b).map((b) => `[${b}] ${k.cmem[b]}`).join(', ') || '-';
        L.push(`| ${t} | ${k.registers} | ${k.barriers} | ${k.staticSmem} | ${k.dynamicSmem} | ${k.spillStores}/${k.spillLoads} | ${k.stackFrame} | ${cmem} | ${k.threads} | ${k.ctasPerSm} | ${k.limitedBy} |`);
      }
    }
  }
  L.push('');
  return L.join('\n');
}

function firstDifference(a, b) {
  const x = a.split('\n');
  const y = b.split('\n');
  for (let i = 0; i < Math.max(x.length, y.length); i++)
    if (x[i] !== y[i]) return `line ${i + 1}:\n  committed: ${x[i] === undefined ? '<end of file>' : x[i]}\n  generated: ${y[i] === undefined ? '<end of file>' : y[i]}`;
  return 'identical';
}

/**
 * Compares a committed report with a generated one. The parts the code fixes must be equal: the
 * report with the toolkit-dependent cells (registers, constant memory, CTAs/SM and its limit,
 * PTX line counts) blanked. CTAs/SM must not fall. Returns { problems, registerChanges }.
 */
function compareReports(committed, generated) {
  const blank = (line, columns) => {
    const cells = line.split('|');
    for (const c of columns) cells[c] = ' ~ ';
    return cells.join('|');
  };
  const stable = (text) =>
    text
      .split('\n')
      .map((l) =>
        FINGERPRINT_LINE.test(l) ? 'Inputs: ~' : /^\| sm_\d+ \|/.test(l) ? blank(l, [2, 8, 10, 11]) : /^\| `[^`]+` \| \d+ \|/.test(l) ? blank(l, [2]) : /^\| region `/.test(l) ? blank(l, [3, 4]) : l,
      )
      .join('\n');
  const problems = [];
  if (stable(committed) !== stable(generated)) problems.push(`${REPORT} differs in what the code fixes, at ${firstDifference(stable(committed), stable(generated))}`);
  const rows = (text) => {
    const out = new Map();
    let unit = '';
    let kernel = '';
    for (const l of text.split('\n')) {
      if (l.startsWith('## ')) unit = l.slice(3);
      else if (l.startsWith('### ')) kernel = l.slice(4);
      else if (/^\| sm_\d+ \|/.test(l)) {
        const c = l.split('|').map((x) => x.trim());
        out.set(`${unit} ${kernel} [${c[1]}]`, { registers: +c[2], ctas: +c[10] });
      }
    }
    return out;
  };
  const before = rows(committed);
  let registerChanges = 0;
  for (const [key, now] of rows(generated)) {
    const was = before.get(key);
    if (!was) continue;
    if (now.ctas < was.ctas) problems.push(`${key}: CTAs/SM fell from ${was.ctas} to ${now.ctas} (${was.registers} -> ${now.registers} registers)`);
    if (now.registers !== was.registers) registerChanges++;
  }
  return { problems, registerChanges };
}

/** Merges problems that differ only in their `[sm_XX]` target into one `[sm_80, sm_86]` line. */
function collapseTargets(problems) {
  const groups = new Map();
  for (const p of problems) {
    const targets = [];
    const key = p.replace(/\[(sm_\d+)\]/, (_, t) => (targets.push(t), '[@TARGETS@]'));
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(...targets);
  }
  return [...groups].map(([key, ts]) => key.replace('@TARGETS@', ts.join(', ')));
}

async function main(argv) {
  const check = argv.includes('--check');
  const t0 = Date.now();
  if (!haveNvcc()) {
    console.error(`gate: ${nvccPath()} not found or not runnable; the CUDA compile gate needs nvcc (set NVCC to its path)`);
    return 1;
  }
  const file = path.join(ROOT, REPORT);
  const committed = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
  const manifest = loadManifest();
  let reuse = new Map();
  let changed = [];
  const full = argv.includes('--full') || !!process.env.PSA_GATE_FULL;
  if (committed !== null) {
    const plan = planCompiles(manifest, committed, { full });
    reuse = plan.reuse;
    changed = plan.compile.filter((u) => !(manifest.verify || []).includes(u));
    console.log(`gate: compiling ${plan.compile.length} of ${plan.compile.length + reuse.size} units (${reuse.size} unchanged since ${REPORT} was generated, kept)`);
  }
  const { problems, report } = await runGate({ manifest, reuse, log: (s) => console.log(`gate: ${s}`) });
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (problems.length) {
    const merged = collapseTargets(problems);
    console.error(`\ngate: FAILED (${merged.length} problem${merged.length > 1 ? 's' : ''}):`);
    for (const p of merged) console.error(`  - ${p}`);
    console.error(`gate: ${REPORT} not written (${secs} s)`);
    return 1;
  }
  if (check) {
    if (committed === null) {
      console.error(`gate: ${REPORT} is missing; run \`npm run gate\` and commit it`);
      return 1;
    }
    const { problems: stale, registerChanges } = compareReports(committed, report);
    if (stale.length) {
      console.error(`gate: ${REPORT} is stale; run \`npm run gate\` and commit it:`);
      for (const p of stale) console.error(`  - ${p}`);
      return 1;
    }
    const note = registerChanges ? `; registers differ on ${registerChanges} kernel targets (another toolkit, or code changed: \`npm run gate\` rewrites them)` : '';
    const moved = changed.length && !full ? `; the inputs of ${changed.join(', ')} changed without changing what they fix (\`npm run gate\` records their new fingerprints)` : '';
    console.log(`gate: passed; ${REPORT} is current${note}${moved} (${secs} s)`);
    return 0;
  }
  if (committed !== report) fs.writeFileSync(file, report);
  console.log(`gate: passed; ${REPORT} ${committed === report ? 'unchanged' : 'written'} (${secs} s)`);
  return 0;
}

module.exports = {
  parsePtxasOutput,
  compileUnit,
  checkPtx,
  measureRegions,
  runGate,
  renderReport,
  unitInputs,
  unitFingerprint,
  reportSections,
  planCompiles,
  compareReports,
  evaluateConstants,
  loadManifest,
  haveNvcc,
  demangle,
  cudaIncludeDir,
  PTXAS_OPTIONS,
  REPORT,
  MANIFEST,
};

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(`gate: ${e && e.stack ? e.stack : e}`);
      process.exit(1);
    },
  );
}
