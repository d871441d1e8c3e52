/**
 * A sticky CUDA error (here a launch that faults in the emulated build, which the runtime
 * reports as cudaErrorLaunchFailure, as a device trap does) latches the device unusable for
 * the rest of the process: info() and unusable() report the first failure, and every later
 * native call is refused as ERR_BACKEND_UNAVAILABLE instead of failing again with ERR_CUDA.
 * Each case runs in its own child process, since the latch lasts as long as the process.
 */
import { missingBuild, runCase, summary } from './child';

const missing = missingBuild();
if (missing) test.skip(`sticky-error cases: skipped because ${missing}`, () => {});

const fault = `
const first = await emu.faultForTests().then(() => 'no error', (e) => [e.code, e.cudaError]);
`;

const CASES: [string, string, unknown][] = [
  ['the faulting launch itself is ERR_CUDA with the runtime name', `${fault} return first;`, ['ERR_CUDA', 'cudaErrorLaunchFailure']],
  ['info() and unusable() report the first sticky failure',
    `${fault} const u = emu.unusable(); const i = emu.info().unusable; return [u.code, u.name, i.name, i.message === u.message, /a fault the tests asked for/.test(u.message)];`,
    [719, 'cudaErrorLaunchFailure', 'cudaErrorLaunchFailure', true, true]],
  ['later uploads, downloads and checks are refused as unavailable, naming the first failure',
    `const t = await emu.upload(new Float32Array(4), 'float32'); ${fault}
     // Every handler attached at once: a rejection left unhandled while another is awaited would end the process.
     const calls = [emu.upload(new Float32Array(4), 'float32'), t.download(), emu.firstNonFinite(t), emu.faultForTests()];
     return await Promise.all(calls.map((p) => p.then(() => 'resolved', (e) => e.code + (/cudaErrorLaunchFailure/.test(e.message) ? ' after cudaErrorLaunchFailure' : ''))));`,
    Array(4).fill('ERR_BACKEND_UNAVAILABLE after cudaErrorLaunchFailure')],
  ["attention on 'cuda-emu' is refused as unavailable", `${fault}
     const q = new Float32Array(64 * 16).fill(0.25);
     return await psa.attention(q, q, q, { shape: { batch: 1, heads: 1, seqQ: 64, headDim: 16 }, backend: 'cuda-emu' }).then(() => 'resolved', (e) => e.code);`,
    'ERR_BACKEND_UNAVAILABLE'],
  ['lib/native.ts states why the device is unusable', `${fault} return native.unusableReason(emuState);`,
    expect.stringMatching(/^the device is unusable for the rest of this process: an earlier call failed with cudaErrorLaunchFailure .*restart the process$/)],
  ["the registry reports 'cuda-emu' unavailable with that reason", `${fault}
     const s = psa.info().backends.find((b) => b.name === 'cuda-emu'); return [s.available, /cudaErrorLaunchFailure/.test(s.reason)];`,
    [false, true]],
  ['a process without a fault reports nothing', `return [emu.unusable(), emu.info().unusable ?? null, native.unusableReason(emuState)];`, [null, null, null]],
];

(missing ? describe.skip : describe)('sticky CUDA errors latch the device unusable', () => {
  test.each(CASES)('%s', (_name, body, expected) => {
    expect(summary(runCase(body))).toEqual({ status: 0, signal: null, crash: null, outcome: { resolved: expected } });
  });
});
