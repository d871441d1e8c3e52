/**
 * Inputs changed while a call is in flight: filled with NaN or -1e5, transferred away
 * (structuredClone with transfer) and collected, or disposed. Every call must resolve with the
 * answer it would have given had nothing happened (computed first in the same child), on the
 * js backend and on cuda-emu. Run by in-flight.test.ts, each in a child with --expose-gc.
 */
/** What a case does right after starting the call (q, k, v are its inputs, layout the options' layout). */
const MUTATIONS = {
  'filled with NaN': `for (const a of hostArrays) a.fill(NaN);`,
  'filled with -1e5': `for (const a of hostArrays) a.fill(-1e5);`,
  'transferred and collected': `structuredClone(hostArrays, { transfer: hostArrays.map((a) => a.buffer) }); hostArrays.length = 0; collect();`,
} as const;

/** Defines make() => [q, k, v] as host arrays, the options, and same(a, b) (bitwise equal arrays). */
const common = (backend: string) => `
const shape = { batch: 1, heads: 2, seqQ: 64, headDim: 16 };
const n = 2 * 64 * 16;
const make = () => [1, 2, 3].map((s) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * s + s) / 2));
const options = { shape, causal: true, backend: '${backend}' };
const same = (a, b) => a.length === b.length && Array.from(a).every((x, i) => Object.is(x, b[i])) ? 'same' : 'different: ' + Array.from(a.slice(0, 3)) + ' vs ' + Array.from(b.slice(0, 3));
const host = async (o) => (o instanceof psa.Tensor ? await o.download() : o);
`;

const attentionCase = (backend: string, inputs: 'Float32Array' | 'cpu Tensor', mutation: string) => `${common(backend)}
const expected = await host((await psa.attention(...make(), options)).output);
let hostArrays = make();
const args = ${inputs === 'cpu Tensor' ? `hostArrays.map((a) => psa.Tensor.fromFloat32(a, [1, 2, 64, 16]))` : 'hostArrays.slice()'};
const pending = psa.attention(...args, ${inputs === 'cpu Tensor' ? `{ causal: true, backend: '${backend}' }` : 'options'});
${mutation}
return same(await host((await pending).output), expected);`;

const layoutCase = (backend: string) => `${common(backend)}
const sparse = { shape, causal: true, window: 16, blocks: { ratio: 0.5 }, blockSize: 64 };
const layout = await psa.buildBlockLayout(...make().slice(0, 2), { ...sparse, backend: 'js' });
const given = { shape, layout, backend: '${backend}' };
const expected = await host((await psa.attention(...make(), given)).output);
const pending = psa.attention(...make(), given);
layout.indices.fill(-7); layout.offsets.fill(1 << 30); layout.flags.fill(9);
return same(await host((await pending).output), expected);`;

const buildLayoutCase = (backend: string, mutation: string) => `${common(backend)}
const sparse = { shape, causal: true, window: 16, blocks: { ratio: 0.5 }, blockSize: 64, backend: '${backend}' };
const expected = JSON.stringify((await psa.buildBlockLayout(...make().slice(0, 2), sparse)).toJSON());
let hostArrays = make().slice(0, 2);
const pending = psa.buildBlockLayout(...hostArrays, sparse);
${mutation}
return JSON.stringify((await pending).toJSON()) === expected ? 'same' : 'different';`;

const deviceDisposeCase = `${common('cuda-emu')}
const upload = async () => Promise.all(make().map((a) => psa.Tensor.upload(a, [1, 2, 64, 16], { location: 'cuda-emu', type: 'float16' })));
const [q0, k0, v0] = await upload();
const expected = await host((await psa.attention(q0, k0, v0, { causal: true })).output);
let [q, k, v] = await upload();
const pending = psa.attention(q, k, v, { causal: true });
q.dispose(); k.dispose(); v.dispose(); q = k = v = null; collect();
return same(await host((await pending).output), expected);`;

const uploadCase = (mutation: string) => `
const n = 4096;
const make = () => [Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 100)];
const expected = Array.from(make()[0], (x) => x);
let hostArrays = make();
const pending = psa.Tensor.upload(hostArrays[0], [1, 1, 64, 64], { location: 'cuda-emu' });
${mutation}
const got = await (await pending).download();
return got.length === n && Array.from(got).every((x, i) => Object.is(x, Math.fround(expected[i]))) ? 'same' : 'different';`;

/** [name, body, quick]: quick cases also run against the sanitized addon (test/emu/sanitize-address.test.ts). */
export const IN_FLIGHT_CASES: [string, string, boolean][] = [];
for (const [what, mutation] of Object.entries(MUTATIONS)) {
  IN_FLIGHT_CASES.push([`Tensor.upload, data ${what}`, uploadCase(mutation), what === 'transferred and collected']);
  for (const backend of ['js', 'cuda-emu']) {
    for (const inputs of ['Float32Array', 'cpu Tensor'] as const) IN_FLIGHT_CASES.push([`attention on ${backend}, ${inputs} inputs ${what}`, attentionCase(backend, inputs, mutation), false]);
    IN_FLIGHT_CASES.push([`buildBlockLayout on ${backend}, inputs ${what}`, buildLayoutCase(backend, mutation), false]);
  }
}
for (const backend of ['js', 'cuda-emu']) IN_FLIGHT_CASES.push([`attention on ${backend}, the layout's arrays overwritten`, layoutCase(backend), false]);
IN_FLIGHT_CASES.push(['attention on cuda-emu, device-tensor inputs disposed and collected', deviceDisposeCase, false]);

