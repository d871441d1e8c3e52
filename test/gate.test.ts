/**
 * CUDA compile gate (scripts/gate.js): the ptxas -v parser on a captured sample, the report
 * comparison of `--check` (toolkit-dependent figures may differ, what the code fixes may not,
 * CTAs/SM may not fall), the CMake build's ptxas options, a planted spill caught for sm_80, the
 * PTX instruction check, launch shapes evaluated from the traits, and `--check` proving
 * cuda/RESOURCES.md is current. The nvcc parts skip, with a message, where nvcc is not on PATH.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const gate = require('../scripts/gate.js');

const ROOT = path.resolve(__dirname, '..');
const HAVE_NVCC: boolean = gate.haveNvcc();
const nvccTest = HAVE_NVCC ? test : test.skip;
if (!HAVE_NVCC) {
  // eslint-disable-next-line no-console
  console.warn('gate.test: nvcc is not on PATH (set NVCC to its path): compile-gate tests skipped');
}

// Captured from nvcc 13.0 (-Xptxas -v,-warn-spills,-warn-lmem-usage,-Werror), sm_80, plus a
// planted local-memory kernel and a non-entry function with its own properties line.
const SAMPLE = `ptxas error   : Local memory used for function '_Z12spill_kernelPfPKii', size of stack frame: 1024 bytes
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_ZN3psa3gpu19widen_to_f32_kernelI13__nv_bfloat16EEvPKT_Pfm' for 'sm_80'
ptxas info    : Function properties for _ZN3psa3gpu19widen_to_f32_kernelI13__nv_bfloat16EEvPKT_Pfm
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers, 376 bytes cmem[0]
ptxas info    : Compile time = 17.347 ms
ptxas info    : Function properties for _Z6helperi
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Compiling entry function '_Z12spill_kernelPfPKii' for 'sm_80'
ptxas info    : Function properties for _Z12spill_kernelPfPKii
    1024 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 1 barriers, 1024 bytes cumulative stack size, 4096 bytes smem, 372 bytes cmem[0], 8 bytes cmem[2]
ptxas info    : Compile time = 55.730 ms
ptxas info    : Compiling entry function '_Z4h90kPf' for 'sm_90'
ptxas info    : Function properties for _Z4h90kPf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 14 registers, used 0 barriers
`;

describe('ptxas -v parser', () => {
  test('reads registers, smem, spills, stack and cmem per kernel', () => {
    const r = gate.parsePtxasOutput(SAMPLE);
    expect(r.kernels.map((k: { name: string }) => k.name)).toEqual([
      '_ZN3psa3gpu19widen_to_f32_kernelI13__nv_bfloat16EEvPKT_Pfm',
      '_Z12spill_kernelPfPKii',
      '_Z4h90kPf',
    ]);
    expect(r.kernels[0]).toMatchObject({
      target: 'sm_80',
      registers: 10,
      barriers: 0,
      staticSmem: 0,
      stackFrame: 0,
      spillStores: 0,
      spillLoads: 0,
      cumulativeStack: 0,
      cmem: { 0: 376 },
    });
    expect(r.kernels[1]).toMatchObject({
      registers: 32,
      barriers: 1,
      staticSmem: 4096,
      stackFrame: 1024,
      cumulativeStack: 1024,
      cmem: { 0: 372, 2: 8 },
    });
    expect(r.kernels[2]).toMatchObject({ target: 'sm_90', registers: 14, cmem: {} });
    expect(r.functions).toEqual([{ name: '_Z6helperi', stackFrame: 8, spillStores: 4, spillLoads: 4 }]);
    expect(r.diagnostics).toEqual([
      { level: 'error', message: "Local memory used for function '_Z12spill_kernelPfPKii', size of stack frame: 1024 bytes" },
    ]);
  });

  test('demangles with c++filt where present', () => {
    const names = gate.demangle(['_Z12spill_kernelPfPKii']);
    const d = names.get('_Z12spill_kernelPfPKii');
    expect([ 'spill_kernel(float*, int const*, int)', '_Z12spill_kernelPfPKii' ]).toContain(d);
  });
});

// A report of one kernel on one target, in the layout renderReport writes.
function report({ registers = 176, smem = 34816, ctas = 2, cpAsync = 468 } = {}): string {
  return [
    '## cuda/attention/forward_hdim128.cu',
    '',
    '| instruction | PTX lines | result |',
    '| --- | ---: | --- |',
    `| \`cp.async\` | ${cpAsync} | present |`,
    '',
    '### `attention_forward_kernel<ForwardTraits<128>>`',
    '',
    '| target | registers | barriers | static smem | dynamic smem | spill st/ld | stack | cmem | threads | CTAs/SM | limited by |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |',
    `| sm_80 | ${registers} | 1 | 0 | ${smem} | 0/0 | 0 | [0] 616 | 128 | ${ctas} | registers |`,
    '',
  ].join('\n');
}

describe('--check report comparison', () => {
  test('registers and PTX line counts of another toolkit pass, and are counted', () => {
    const r = gate.compareReports(report(), report({ registers: 190, cpAsync: 500 }));
    expect(r.problems).toEqual([]);
    expect(r.registerChanges).toBe(1);
  });

  test('a change of dynamic shared memory fails', () => {
    const r = gate.compareReports(report(), report({ smem: 36864 }));
    expect(r.problems.join('\n')).toContain('differs in what the code fixes');
  });

  test('CTAs per SM falling fails, naming the kernel and the registers', () => {
    const r = gate.compareReports(report(), report({ registers: 260, ctas: 1 }));
    expect(r.problems.join('\n')).toMatch(/attention_forward_kernel.*\[sm_80\]: CTAs\/SM fell from 2 to 1 \(176 -> 260 registers\)/);
  });

  test('the CMake CUDA build uses the gate\'s ptxas options, so a spill fails it', () => {
    const cmake = fs.readFileSync(path.join(ROOT, 'CMakeLists.txt'), 'utf8');
    expect(cmake).toContain(`-Xptxas=${gate.PTXAS_OPTIONS.replace(/^-v,/, '')}`);
  });

  test('launch shapes come from the kernels\' traits', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psa-gate-shapes-'));
    try {
      const values = gate.evaluateConstants(gate.loadManifest().units, dir);
      expect(values.get('psa::gpu::ForwardTraits<128>::kSmemBytes')).toBe(34816);
      expect(values.get('psa::gpu::TopkTraits<64>::kThreads')).toBe(128);
      expect([...values.values()].every((v: number) => Number.isInteger(v) && v > 0)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('marked PTX regions', () => {
  const ptx = [
    '\tmov.f32 %f1, 0f00000000;',
    '\t// begin inline asm',
    '\t// psa-region-begin full-tile-softmax',
    '\t// end inline asm',
    '\tfma.rn.f32 %f2, %f3, %f4, %f5;',
    '\tex2.approx.ftz.f32 %f6, %f2;',
    '$L__BB0_3:',
    '\t@%p1 bra $L__BB0_5;',
    '\tadd.f32 %f7, %f6, %f1;',
    '\t// psa-region-end full-tile-softmax',
    '\t@%p2 bra $L__BB0_9;',
    '\t// psa-region-begin full-tile-softmax',
    '\tadd.f32 %f8, %f6, %f1;',
    '\t// psa-region-end full-tile-softmax',
  ].join('\n');

  test('each copy: instruction lines and conditional branches between its markers, labels and comments left out', () => {
    const r = gate.measureRegions(ptx, [{ name: 'full-tile-softmax', scoresPerLane: 32, maxBranches: 0 }]);
    expect(r['full-tile-softmax']).toEqual([
      { instructions: 4, branches: 1 },
      { instructions: 1, branches: 0 },
    ]);
  });

  test('--check ignores the instruction counts of another toolkit but not the branches', () => {
    const row = (ins: number, branches: number) => `## u\n\n| region \`r\` | 2 | ${ins} | ${(ins / 32).toFixed(2)} | ${branches} |\n`;
    expect(gate.compareReports(row(300, 0), row(320, 0)).problems).toEqual([]);
    expect(gate.compareReports(row(300, 0), row(300, 3)).problems.join('\n')).toContain('differs in what the code fixes');
  });
});

describe('unit fingerprints (what --check may keep without compiling)', () => {
  let dir: string;
  const manifest = (verify: string[] = []) => ({
    targets: ['sm_80'],
    flags: ['-std=c++17', '-I', 'inc'],
    verify,
    units: [{ source: 'a.cu', kernels: [] }, { source: 'b.cu', kernels: [] }],
  });
  const section = (source: string, fingerprint: string) => `## ${source}\n\nInputs: \`${fingerprint}\` (2 repository files)\n\nPTX instructions required: none.\n`;
  const fp = (m: object, source: string) => gate.unitFingerprint(m, { source, kernels: [] }, { cwd: dir, toolkit: 'toolkit-1' }).fingerprint;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psa-gate-fp-'));
    fs.mkdirSync(path.join(dir, 'inc', 'sub'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'a.cu'), '#include <cuda_fp16.h>\n#include "sub/shared.h"\n__global__ void a() {}\n');
    fs.writeFileSync(path.join(dir, 'b.cu'), '#include "local.h"\n__global__ void b() {}\n');
    fs.writeFileSync(path.join(dir, 'local.h'), '#pragma once\n');
    fs.writeFileSync(path.join(dir, 'inc', 'sub', 'shared.h'), '#pragma once\n  #  include "next.h"\n');
    fs.writeFileSync(path.join(dir, 'inc', 'sub', 'next.h'), '#pragma once\n');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('inputs: quoted includes, transitively, beside the includer and on -I; system headers left to the toolkit', () => {
    expect(gate.unitInputs('a.cu', ['-I', 'inc'], [], dir)).toEqual(['a.cu', 'inc/sub/shared.h', 'inc/sub/next.h']);
    expect(gate.unitInputs('b.cu', ['-I', 'inc'], [], dir)).toEqual(['b.cu', 'local.h']);
  });

  test('a header two includes deep, the toolkit or the manifest entry changes the fingerprint; nothing else does', () => {
    const m = manifest();
    const before = fp(m, 'a.cu');
    expect(fp(m, 'a.cu')).toBe(before);
    fs.writeFileSync(path.join(dir, 'local.h'), '#pragma once // b only\n');
    expect(fp(m, 'a.cu')).toBe(before);
    fs.writeFileSync(path.join(dir, 'inc', 'sub', 'next.h'), '#pragma once\nconstexpr int kTile = 64;\n');
    expect(fp(m, 'a.cu')).not.toBe(before);
    const now = fp(m, 'a.cu');
    expect(gate.unitFingerprint(m, { source: 'a.cu', kernels: [] }, { cwd: dir, toolkit: 'toolkit-2' }).fingerprint).not.toBe(now);
    expect(gate.unitFingerprint(m, { source: 'a.cu', kernels: [{ match: 'a', threads: 64 }] }, { cwd: dir, toolkit: 'toolkit-1' }).fingerprint).not.toBe(now);
  });

  test('planCompiles keeps a section whose fingerprint matches, compiles changed, unrecorded and verify units', () => {
    const m = manifest();
    const committed = `# report\n\n${section('a.cu', fp(m, 'a.cu'))}\n${section('b.cu', fp(m, 'b.cu'))}`;
    const plan = gate.planCompiles(m, committed, { cwd: dir, toolkit: 'toolkit-1' });
    expect([...plan.reuse.keys()]).toEqual(['a.cu', 'b.cu']);
    expect(plan.reuse.get('b.cu')).toEqual(section('b.cu', fp(m, 'b.cu')).trimEnd().split('\n'));
    expect(plan.compile).toEqual([]);
    fs.writeFileSync(path.join(dir, 'local.h'), '#pragma once\n#define PSA_TILE 32\n');
    expect(gate.planCompiles(m, committed, { cwd: dir, toolkit: 'toolkit-1' }).compile).toEqual(['b.cu']);
    expect(gate.planCompiles(manifest(['a.cu']), committed, { cwd: dir, toolkit: 'toolkit-1' }).compile).toEqual(['a.cu', 'b.cu']);
    expect(gate.planCompiles(m, committed, { cwd: dir, toolkit: 'toolkit-1', full: true }).compile).toEqual(['a.cu', 'b.cu']);
    expect(gate.planCompiles(m, '# report without fingerprints\n', { cwd: dir, toolkit: 'toolkit-1' }).compile).toEqual(['a.cu', 'b.cu']);
  });

  test('the committed report records a fingerprint for every unit', () => {
    const m = gate.loadManifest();
    const sections = gate.reportSections(fs.readFileSync(path.join(ROOT, gate.REPORT), 'utf8'));
    for (const u of m.units.filter((x: { source: string }) => fs.existsSync(path.join(ROOT, x.source)))) {
      const line = (sections.get(u.source) ?? []).find((l: string) => l.startsWith('Inputs: '));
      expect({ source: u.source, recorded: line !== undefined }).toEqual({ source: u.source, recorded: true });
    }
  });
});

describe('compile gate (nvcc)', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psa-gate-test-'));
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  nvccTest(
    'a planted spill (dynamically indexed local array) fails for sm_80',
    async () => {
      const src = path.join(dir, 'planted_spill.cu');
      fs.writeFileSync(
        src,
        `__global__ void __launch_bounds__(256) planted_spill(float* out, const int* idx, int n) {
  float local[256];
  for (int i = 0; i < 256; ++i) local[i] = out[i * n + threadIdx.x];
  out[threadIdx.x] = local[idx[threadIdx.x] & 255] + local[idx[threadIdx.x + 1] & 255];
}
`,
      );
      const r = await gate.compileUnit({ source: src, target: 'sm_80', flags: ['-std=c++17'] });
      expect(r.ok).toBe(false);
      const msg = r.problems.join('\n');
      expect(msg).toContain('planted_spill');
      expect(msg).toContain('[sm_80]');
      expect(msg).toMatch(/stack frame \d+ bytes/);
      expect(r.kernels[0].stackFrame).toBeGreaterThan(0);
    },
    5 * 60_000,
  );

  nvccTest(
    'the PTX check reports a missing instruction',
    async () => {
      const src = path.join(dir, 'ptx_probe.cu');
      fs.writeFileSync(
        src,
        `__global__ void ptx_probe(float* p) { __shared__ float s[64]; s[threadIdx.x] = p[threadIdx.x]; __syncthreads(); p[threadIdx.x] = s[63 - threadIdx.x]; }\n`,
      );
      const r = await gate.checkPtx({ source: src, instructions: ['bar.sync', 'mma.sync'], flags: ['-std=c++17'] });
      expect(r.counts['bar.sync']).toBeGreaterThan(0);
      expect(r.counts['mma.sync']).toBe(0);
      expect(r.ok).toBe(false);
      expect(r.problems.join('\n')).toContain("'mma.sync' missing");
    },
    5 * 60_000,
  );

  nvccTest(
    'node scripts/gate.js --check: cuda/RESOURCES.md is current',
    async () => {
      const { code, out } = await new Promise<{ code: number; out: string }>((resolve) => {
        execFile(
          process.execPath,
          [path.join(ROOT, 'scripts/gate.js'), '--check'],
          { cwd: ROOT, maxBuffer: 16 << 20 },
          (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, out: stdout + stderr }),
        );
      });
      if (code !== 0) throw new Error(`gate --check failed:\n${out}`);
      expect(out).toContain('is current');
    },
    10 * 60_000,
  );
});
