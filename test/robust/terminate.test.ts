/**
 * worker.terminate() while uploads and attentions are in flight on cuda-emu, six times each at
 * varied moments, while the worker keeps calling into the addon: completions that run after
 * the worker's environment is gone, and native calls cut short by the termination, must do
 * nothing, so the process survives every try and exits 0.
 */
import { join } from 'node:path';
import { missingBuild, root, runCase, summary } from './child';

const missing = missingBuild();
if (missing) test.skip(`worker.terminate cases: skipped because ${missing}`, () => {});

const TRIES = 6;

/** The worker: starts its work, says so, and is terminated by the parent meanwhile. */
const workerCode = `
const { parentPort, workerData } = require('node:worker_threads');
const psa = require(${JSON.stringify(join(root, 'dist', 'lib'))});
const x = Float32Array.from({ length: 1 << 18 }, (_, i) => Math.sin(i) / 2);
const shape = { batch: 1, heads: 2, seqQ: 256, headDim: 64 };
const q = x.subarray(0, 2 * 256 * 64);
const small = x.subarray(0, 64 * 16);
const start = (big) => {
  if (workerData.kind === 'upload') psa.Tensor.upload(big ? x : small, big ? [1, 1, 512, 512] : [1, 1, 64, 16], { location: 'cuda-emu', type: 'bfloat16' }).catch(() => {});
  else if (big) psa.attention(q, q, q, { shape, causal: true, backend: 'cuda-emu' }).catch(() => {});
  else psa.attention(small, small, small, { shape: { batch: 1, heads: 1, seqQ: 64, headDim: 16 }, backend: 'cuda-emu' }).catch(() => {});
};
for (let i = 0; i < 3; i++) start(true);
parentPort.postMessage('started');
// Keep entering the addon, so that some terminations land inside a native call too.
const more = () => { start(false); setImmediate(more); };
more();
`;

const parent = (kind: string) => `
const { Worker } = require('node:worker_threads');
for (let i = 0; i < ${TRIES}; i++) {
  const w = new Worker(${JSON.stringify(workerCode)}, { eval: true, workerData: { kind: '${kind}' } });
  await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  await new Promise((resolve) => setTimeout(resolve, 5 + 25 * i));
  await w.terminate();
}
return 'survived ${TRIES}';`;

(missing ? describe.skip : describe)('worker.terminate() with native work in flight', () => {
  test.each(['upload', 'attention'])(`%s: the process survives ${TRIES} terminations and exits 0`, (kind) => {
    expect(summary(runCase(parent(kind), { timeoutMs: 120_000 }))).toEqual({ status: 0, signal: null, crash: null, outcome: { resolved: `survived ${TRIES}` } });
  }, 150_000);
});
