/**
 * Bad input for every native entry (upload, uploadRaw16, download, dispose, attention,
 * buildLayout, firstNonFinite, info, cpuDecode), raw and through the public API, on the emulated build.
 * Each case states its exact outcome: the value it resolves with, or the code and argument it
 * is refused with. `quick` cases are the ones the sanitizer build runs (test/emu/sanitize-address.test.ts).
 */
import type { CaseError } from './child';

export interface BadInputCase {
  name: string;
  body: string;
  /** What it resolves with, or how it is refused. */
  expect: { resolves: unknown } | { rejects: Pick<CaseError, 'code' | 'argument'> };
  quick?: boolean;
}

/** Shared by the attention cases: q, k, v of [1, 1, 64, 16] on the emulated device and a dense request. */
const setup = `
const n = 64 * 16;
const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i) / 2);
const [q, k, v] = [await emu.upload(x, 'float16'), await emu.upload(x, 'float16'), await emu.upload(x, 'float16')];
const request = (o = {}) => ({ compute: 'float16', batch: 1, heads: 1, kvHeads: 1, seqQ: 64, seqK: 64, headDim: 16, bnhd: false, scale: 0.25,
  causal: true, windowLeft: -1, windowRight: -1, globalTokens: 0, blockSize: 64, sparse: false, choice: 0, choiceValue: 0, minBlocks: 0,
  maxBlocks: 0x7fffffff, boundEstimate: false, momentEstimate: false, shareAcrossGroup: false, topK: 0, topKRatio: 0, returnLse: false, returnThresholds: false, ...o });
const layout = (o = {}) => ({ offsets: Int32Array.of(0, 1), indices: Int32Array.of(0), flags: Uint8Array.of(1), ...o });
`;
const rejects = (code: string, argument?: string) => ({ rejects: { code, argument } });

/** One host cache of 2 pool pages (1 kv head, 4 slots, head dim 2) holding a 5-token sequence, and a decode request. */
const decodeSetup = `
const cache = (o = {}) => ({ keys: new Float32Array(16).fill(0.5), values: new Float32Array(16).fill(1), min: new Float64Array(4), max: new Float64Array(4),
  sum: new Float64Array(4), sumSq: new Float64Array(4), kvHeads: 1, pageSize: 4, headDim: 2, ...o });
const request = (o = {}) => ({ heads: 1, m: 1, scale: 1, windowLeft: -1, windowRight: -1, globalTokens: 0, rule: 0, ruleValue: 0, minPages: 0, maxPages: 0,
  estimate: 0, shareAcrossGroup: false, topK: 0, topKRatio: 0, returnLse: true, returnPages: false, threads: 1,
  lengths: Int32Array.of(5), pageTables: [Int32Array.of(0, 1)], ...o });
const q = Float32Array.of(1, 1);
`;

function cpuDecodeCases(): BadInputCase[] {
  const call = (c = '', r = '', qq = 'q') => `${decodeSetup} return Array.from((await emu.cpuDecode(${qq}, cache(${c}), request(${r}))).output);`;
  return [
    { name: 'cpuDecode: a valid request', quick: true, body: call(), expect: { resolves: [1, 1] } },
    { name: 'cpuDecode: a page outside the pool', quick: true, body: call('', '{ pageTables: [Int32Array.of(0, 2)] }'), expect: rejects('ERR_SHAPE', 'request.pageTables') },
    { name: 'cpuDecode: a negative page', body: call('', '{ pageTables: [Int32Array.of(-1, 0)] }'), expect: rejects('ERR_SHAPE', 'request.pageTables') },
    { name: 'cpuDecode: a page table shorter than its sequence', body: call('', '{ pageTables: [Int32Array.of(0)] }'), expect: rejects('ERR_SHAPE', 'request.pageTables') },
    { name: 'cpuDecode: keys not whole pages', body: call('{ keys: new Float32Array(15), values: new Float32Array(15) }'), expect: rejects('ERR_SHAPE', 'cache.keys') },
    { name: 'cpuDecode: metadata short of the pool', body: call('{ sumSq: new Float64Array(3) }'), expect: rejects('ERR_SHAPE', 'cache.sumSq') },
    { name: 'cpuDecode: metadata as Float32Array', body: call('{ min: new Float32Array(4) }'), expect: rejects('ERR_DTYPE', 'cache.min') },
    { name: 'cpuDecode: q of the wrong size', body: call('', '', 'new Float32Array(3)'), expect: rejects('ERR_SHAPE', 'q') },
    { name: 'cpuDecode: m longer than the sequence', body: call('', '{ m: 6 }', 'new Float32Array(12)'), expect: rejects('ERR_SHAPE', 'request.lengths') },
    { name: 'cpuDecode: an unknown rule', body: call('', '{ rule: 7 }'), expect: rejects('ERR_OPTION', 'request.rule') },
    { name: 'cpuDecode: threads 0', body: call('', '{ threads: 0 }'), expect: rejects('ERR_OPTION', 'request.threads') },
    { name: 'cpuDecode: no cache object', body: `${decodeSetup} await emu.cpuDecode(q, null, request());`, expect: rejects('ERR_OPTION', 'cache') },
    { name: 'cpuDecode: a detached q', body: `${decodeSetup} const d = Float32Array.of(1, 1); structuredClone(d, { transfer: [d.buffer] }); await emu.cpuDecode(d, cache(), request());`, expect: rejects('ERR_SHAPE', 'q') },
  ];
}
/** A cpu attention request as lib/backends/cpu.ts builds it: one head, 4 queries and keys of dim 2, blocks of 16. */
const cpuSetup = `
const q = new Float32Array(8).fill(0.5), k = new Float32Array(8).fill(0.25), v = new Float32Array(8).fill(1);
const request = (o = {}) => ({ batch: 1, heads: 1, kvHeads: 1, seqQ: 4, seqK: 4, headDim: 2, bnhd: false, scale: 1, causal: false, windowLeft: -1, windowRight: -1,
  globalTokens: 0, blockSize: 16, queryBlockSize: 16, sparse: false, choice: 0, choiceValue: 0, minBlocks: 0, maxBlocks: 0, boundEstimate: false,
  momentEstimate: false, shareAcrossGroup: false, topK: 0, topKRatio: 0, returnLse: false, returnThresholds: false, threads: 1, ...o });
const layout = (o = {}) => ({ offsets: Int32Array.of(0, 1), indices: Int32Array.of(0), flags: Uint8Array.of(1), ...o });
`;

function cpuAttentionCases(): BadInputCase[] {
  const call = (r = '') => `${cpuSetup} return Array.from((await emu.cpuAttention(q, k, v, request(${r}))).output);`;
  return [
    { name: 'cpuAttention: a valid request', quick: true, body: call(), expect: { resolves: [1, 1, 1, 1, 1, 1, 1, 1] } },
    { name: 'cpuAttention: a layout index past the key blocks', quick: true, body: call('{ sparse: true, layout: layout({ indices: Int32Array.of(1) }) }'), expect: rejects('ERR_SHAPE', 'request.layout.indices') },
    { name: 'cpuAttention: layout offsets ending past the indices', body: call('{ sparse: true, layout: layout({ offsets: Int32Array.of(0, 2) }) }'), expect: rejects('ERR_SHAPE', 'request.layout.offsets') },
    { name: 'cpuAttention: layout offsets as Float32Array', body: call('{ sparse: true, layout: layout({ offsets: Float32Array.of(0, 1) }) }'), expect: rejects('ERR_DTYPE', 'request.layout.offsets') },
    { name: 'cpuAttention: kvHeads not dividing heads', body: `${cpuSetup} await emu.cpuAttention(new Float32Array(24), new Float32Array(16), new Float32Array(16), request({ heads: 3, kvHeads: 2 }));`, expect: rejects('ERR_SHAPE', 'request.kvHeads') },
    { name: 'cpuAttention: batch 2**31', body: call('{ batch: 2 ** 31 }'), expect: rejects('ERR_SHAPE', 'request.batch') },
    { name: 'cpuAttention: blockSize 24', body: call('{ blockSize: 24 }'), expect: rejects('ERR_OPTION', 'request.blockSize') },
    { name: 'cpuAttention: q of the wrong size', body: `${cpuSetup} await emu.cpuAttention(new Float32Array(7), k, v, request());`, expect: rejects('ERR_SHAPE', 'q') },
  ];
}
const upload = (data: string, opts = "{ location: 'cuda-emu' }", dims = '[1, 1, 1, 4]') => `return Array.from(await (await psa.Tensor.upload(${data}, ${dims}, ${opts})).download());`;

export const BAD_INPUT_CASES: BadInputCase[] = [
  // upload, raw
  { name: 'upload: a Float64Array', body: `await emu.upload(new Float64Array(4), 'float32');`, expect: rejects('ERR_DTYPE', 'data') },
  { name: 'upload: no arguments', body: `await emu.upload();`, expect: rejects('ERR_DTYPE', 'data') },
  { name: 'upload: a plain array', body: `await emu.upload([1, 2, 3], 'float32');`, expect: rejects('ERR_DTYPE', 'data') },
  { name: 'upload: an unknown dtype', body: `await emu.upload(new Float32Array(4), 'float8');`, expect: rejects('ERR_DTYPE', 'options.type') },
  { name: 'upload: a SharedArrayBuffer-backed array', quick: true,
    body: `const a = new Float32Array(new SharedArrayBuffer(16)); a.set([1, 2, 3, 4]); const t = await emu.upload(a, 'float32'); a.fill(NaN); return Array.from(await t.download());`,
    expect: { resolves: [1, 2, 3, 4] } },
  { name: 'upload: a detached array', quick: true,
    body: `const a = new Float32Array(4); structuredClone(a, { transfer: [a.buffer] }); await emu.upload(a, 'float32');`, expect: rejects('ERR_SHAPE', 'data') },
  { name: 'upload: device 2**31', body: `await emu.upload(new Float32Array(4), 'float32', 2 ** 31);`, expect: rejects('ERR_OPTION', 'options.device') },
  { name: 'upload: device -0.5', body: `await emu.upload(new Float32Array(4), 'float32', -0.5);`, expect: rejects('ERR_OPTION', 'options.device') },
  { name: 'upload: device NaN', body: `await emu.upload(new Float32Array(4), 'float32', NaN);`, expect: rejects('ERR_OPTION', 'options.device') },
  { name: 'upload: device "0"', body: `await emu.upload(new Float32Array(4), 'float32', '0');`, expect: rejects('ERR_OPTION', 'options.device') },
  { name: 'upload: a device that does not exist', quick: true, body: `await emu.upload(new Float32Array(4), 'float32', 3);`, expect: rejects('ERR_OPTION', 'options.device') },
  { name: 'uploadRaw16: float32 as the type', body: `await emu.uploadRaw16(new Uint16Array(4), 'float32');`, expect: rejects('ERR_DTYPE', 'options.type') },
  { name: 'uploadRaw16: an Int16Array', body: `await emu.uploadRaw16(new Int16Array(4), 'float16');`, expect: rejects('ERR_DTYPE', 'data') },
  // upload, public
  { name: 'Tensor.upload: a SharedArrayBuffer-backed array',
    body: `const a = new Float32Array(new SharedArrayBuffer(16)); a.set([1, 2, 3, 4]); ${upload('a')}`, expect: { resolves: [1, 2, 3, 4] } },
  { name: 'Tensor.upload: a detached array', body: `const a = new Float32Array(4); structuredClone(a, { transfer: [a.buffer] }); ${upload('a')}`, expect: rejects('ERR_SHAPE', 'data') },
  { name: 'Tensor.upload: device 2**31', body: upload('new Float32Array(4)', "{ location: 'cuda-emu', device: 2 ** 31 }"), expect: rejects('ERR_OPTION', 'options.device') },
  { name: 'Tensor.upload: 7e4 as float16', quick: true, body: upload('Float32Array.of(1, 2, 3, 7e4)', "{ location: 'cuda-emu', type: 'float16' }"), expect: rejects('ERR_VALUE', 'data') },
  { name: 'Tensor.upload: 1e5 as float16', body: upload('Float32Array.of(1e5, 0, 0, 0)', "{ location: 'cuda-emu', type: 'float16' }"), expect: rejects('ERR_VALUE', 'data') },
  { name: 'Tensor.upload: 65519 as float16 becomes 65504', body: upload('Float32Array.of(65519, -65519, 65505, 1)', "{ location: 'cuda-emu', type: 'float16' }"), expect: { resolves: [65504, -65504, 65504, 1] } },
  { name: 'Tensor.upload: 3.4e38 as bfloat16', body: upload('Float32Array.of(0, 3.4e38, 0, 0)', "{ location: 'cuda-emu', type: 'bfloat16' }"), expect: rejects('ERR_VALUE', 'data') },
  { name: 'Tensor.upload: NaN as float32', body: upload('Float32Array.of(0, 0, NaN, 0)'), expect: rejects('ERR_VALUE', 'data') },
  { name: 'Tensor.upload: -Infinity as bfloat16', body: upload('Float32Array.of(0, -Infinity, 0, 0)', "{ location: 'cuda-emu', type: 'bfloat16' }"), expect: rejects('ERR_VALUE', 'data') },
  { name: 'Tensor.upload: raw float16 Infinity bits', body: upload('Uint16Array.of(0x3c00, 0x7c00, 0, 0)', "{ location: 'cuda-emu', type: 'float16' }"), expect: rejects('ERR_VALUE', 'data') },
  { name: 'Tensor.upload: absurd dims', body: upload('new Float32Array(4)', "{ location: 'cuda-emu' }", '[2 ** 20, 2 ** 20, 2 ** 20, 2 ** 20]'), expect: rejects('ERR_SHAPE', 'data') },
  // download, dispose, the handle
  { name: 'download: after dispose', body: `const t = await emu.upload(new Float32Array(4), 'float32'); t.dispose(); await t.download();`, expect: rejects('ERR_DISPOSED', 'tensor') },
  { name: 'download: on a foreign this', quick: true,
    body: `const t = await emu.upload(new Float32Array(4), 'float32'); await Object.getPrototypeOf(t).download.call({});`, expect: rejects('ERR_DTYPE', 'this') },
  { name: 'download: on a look-alike made from the prototype', quick: true,
    body: `const t = await emu.upload(new Float32Array(4), 'float32'); await Object.create(Object.getPrototypeOf(t)).download();`, expect: rejects('ERR_DTYPE', 'this') },
  { name: 'DeviceTensor: new from JS', body: `const t = await emu.upload(new Float32Array(4), 'float32'); new t.constructor();`, expect: rejects('ERR_OPTION', 'DeviceTensor') },
  { name: 'download: dispose and collect while in flight', quick: true,
    body: `let t = await emu.upload(Float32Array.of(1, 2, 3, 4), 'float16'); const p = t.download(); t.dispose(); t = null; collect(); return Array.from(await p);`,
    expect: { resolves: [1, 2, 3, 4] } },
  { name: 'dispose: twice, then the getters', body: `const t = await emu.upload(new Float32Array(4), 'float16'); t.dispose(); t.dispose(); return [t.disposed, t.type, t.count];`,
    expect: { resolves: [true, 'float16', 4] } },
  { name: 'dispose: on a foreign this', body: `const t = await emu.upload(new Float32Array(4), 'float32'); Object.getPrototypeOf(t).dispose.call(Object.create(Object.getPrototypeOf(t)));`, expect: rejects('ERR_DTYPE', 'this') },
  { name: 'the count getter on a foreign this', body: `const t = await emu.upload(new Float32Array(4), 'float32'); return Object.getOwnPropertyDescriptor(Object.getPrototypeOf(t), 'count').get.call(5);`, expect: rejects('ERR_DTYPE', 'this') },
  // attention and buildLayout, raw
  { name: 'attention: q is a Float32Array', body: `${setup} await emu.attention(x, k, v, request());`, expect: rejects('ERR_DTYPE', 'q') },
  { name: 'attention: v is a look-alike', quick: true, body: `${setup} await emu.attention(q, k, Object.create(Object.getPrototypeOf(v)), request());`, expect: rejects('ERR_DTYPE', 'v') },
  { name: 'attention: q disposed', body: `${setup} q.dispose(); await emu.attention(q, k, v, request());`, expect: rejects('ERR_DISPOSED', 'q') },
  { name: 'attention: no request', body: `${setup} await emu.attention(q, k, v);`, expect: rejects('ERR_OPTION', 'request') },
  { name: 'attention: headDim 1000', body: `${setup} await emu.attention(q, k, v, request({ headDim: 1000 }));`, expect: rejects('ERR_SHAPE', 'request.headDim') },
  { name: 'attention: negative batch and heads whose product wraps to the tensor size', quick: true,
    body: `${setup} await emu.attention(q, k, v, request({ batch: -1, heads: -1, kvHeads: -1 }));`, expect: rejects('ERR_SHAPE', 'request.batch') },
  { name: 'attention: seqQ 2**31', body: `${setup} await emu.attention(q, k, v, request({ seqQ: 2 ** 31 }));`, expect: rejects('ERR_SHAPE', 'request.seqQ') },
  { name: 'attention: heads not a multiple of kvHeads', body: `${setup} await emu.attention(q, k, v, request({ heads: 3, kvHeads: 2 }));`, expect: rejects('ERR_SHAPE', 'request.kvHeads') },
  { name: 'attention: a shape that does not match k', body: `${setup} await emu.attention(q, k, v, request({ seqK: 32 }));`, expect: rejects('ERR_SHAPE', 'k') },
  { name: 'attention: scale NaN', body: `${setup} await emu.attention(q, k, v, request({ scale: NaN }));`, expect: rejects('ERR_OPTION', 'request.scale') },
  { name: 'attention: blockSize 16', body: `${setup} await emu.attention(q, k, v, request({ blockSize: 16 }));`, expect: rejects('ERR_OPTION', 'request.blockSize') },
  { name: 'attention: a layout index past the last key block', quick: true,
    body: `${setup} await emu.attention(q, k, v, request({ sparse: true, layout: layout({ indices: Int32Array.of(5) }) }));`, expect: rejects('ERR_SHAPE', 'request.layout.indices') },
  { name: 'attention: layout offsets past the indices', quick: true,
    body: `${setup} await emu.attention(q, k, v, request({ sparse: true, layout: layout({ offsets: Int32Array.of(0, 9) }) }));`, expect: rejects('ERR_SHAPE', 'request.layout.offsets') },
  { name: 'attention: a layout on SharedArrayBuffers', quick: true,
    body: `${setup} const sab = (T, vals) => { const a = new T(new SharedArrayBuffer(vals.length * T.BYTES_PER_ELEMENT)); a.set(vals); return a; };
      const r = await emu.attention(q, k, v, request({ sparse: true, layout: { offsets: sab(Int32Array, [0, 1]), indices: sab(Int32Array, [0]), flags: sab(Uint8Array, [1]) } }));
      return r.keptPairs;`,
    expect: { resolves: (64 * 65) / 2 } },
  { name: 'attention: detached layout offsets',
    body: `${setup} const o = Int32Array.of(0, 1); structuredClone(o, { transfer: [o.buffer] }); await emu.attention(q, k, v, request({ sparse: true, layout: layout({ offsets: o }) }));`,
    expect: rejects('ERR_SHAPE', 'request.layout.offsets') },
  { name: 'attention: windows as wide as a 32-bit int keep every key (no overflow of position + window)', quick: true,
    body: `${setup} return (await emu.attention(q, k, v, request({ causal: false, sparse: true, windowLeft: 2 ** 31 - 1, windowRight: 2 ** 31 - 1 }))).keptPairs;`,
    expect: { resolves: 64 * 64 } },
  { name: 'attention: polyCoefficients holding NaN', body: `${setup} await emu.attention(q, k, v, request({ polyCoefficients: Float32Array.of(1, NaN, 0.2) }));`, expect: rejects('ERR_VALUE', 'request.polyCoefficients') },
  { name: 'buildLayout: a dense request', body: `${setup} await emu.buildLayout(q, k, request());`, expect: rejects('ERR_OPTION', 'request.sparse') },
  { name: 'buildLayout: k disposed', body: `${setup} k.dispose(); await emu.buildLayout(q, k, request({ sparse: true, windowLeft: 8, windowRight: 0 }));`, expect: rejects('ERR_DISPOSED', 'k') },
  // attention, public: values that are not finite, or not finite in the compute type
  { name: 'attention: a float16 device tensor holding NaN',
    body: `const bits = new Uint16Array(64 * 16).fill(0x3c00); bits[100] = 0x7e00;
      const t = new psa.Tensor(new tensorLib.DeviceStorage('cuda-emu', await emu.uploadRaw16(bits, 'float16')), [1, 1, 64, 16]);
      await psa.attention(t, t, t, { causal: true });`,
    expect: rejects('ERR_VALUE', 'q') },
  { name: 'attention: a host value above the float16 range on cuda-emu',
    body: `const a = new Float32Array(64 * 16).fill(0.5); const b = a.slice(); b[5] = 7e4;
      await psa.attention(a, b, a, { shape: { batch: 1, heads: 1, seqQ: 64, headDim: 16 }, backend: 'cuda-emu' });`,
    expect: rejects('ERR_VALUE', 'k') },
  // cpuDecode, raw: a request that does not fit the cache's arrays is refused before any read
  ...cpuDecodeCases(),
  ...cpuAttentionCases(),
  // firstNonFinite and info
  { name: 'firstNonFinite: not a tensor', body: `await emu.firstNonFinite(new Float32Array(4));`, expect: rejects('ERR_DTYPE', 'tensor') },
  { name: 'firstNonFinite: a negative bound', body: `const t = await emu.upload(new Float32Array(4), 'float32'); await emu.firstNonFinite(t, -1);`, expect: rejects('ERR_OPTION', 'bound') },
  { name: 'firstNonFinite: disposed', body: `const t = await emu.upload(new Float32Array(4), 'float32'); t.dispose(); await emu.firstNonFinite(t);`, expect: rejects('ERR_DISPOSED', 'tensor') },
  { name: 'firstNonFiniteEach: not an array', body: `const t = await emu.upload(new Float32Array(4), 'float32'); await emu.firstNonFiniteEach(t);`, expect: rejects('ERR_SHAPE', 'tensors') },
  { name: 'firstNonFiniteEach: empty', body: `await emu.firstNonFiniteEach([]);`, expect: rejects('ERR_SHAPE', 'tensors') },
  { name: 'firstNonFiniteEach: 65 tensors', body: `const t = await emu.upload(new Float32Array(4), 'float32'); await emu.firstNonFiniteEach(Array(65).fill(t));`, expect: rejects('ERR_SHAPE', 'tensors') },
  { name: 'firstNonFiniteEach: a disposed second tensor', body: `const t = await emu.upload(new Float32Array(4), 'float32'); const u = await emu.upload(new Float32Array(4), 'float32'); u.dispose(); await emu.firstNonFiniteEach([t, u]);`, expect: rejects('ERR_DISPOSED', 'tensors[1]') },
  { name: 'firstNonFiniteEach: a number among the tensors', body: `const t = await emu.upload(new Float32Array(4), 'float32'); await emu.firstNonFiniteEach([t, 3]);`, expect: rejects('ERR_DTYPE', 'tensors[1]') },
  { name: 'info: extra arguments, no latch', body: `const i = emu.info(1, {}, null); return [i.flavor, i.unusable ?? null, emu.unusable()];`, expect: { resolves: ['cuda-emu', null, null] } },
];
