/**
 * attentionBackward with device tensors on the device backends (cuda-emu here, cuda where a
 * device is present): gradients come back as float32 tensors where the inputs live, with their
 * dims, equal to the gradients of the same call on host arrays; float32 and float16 tensors;
 * deterministic results; and a dO that lives elsewhere is refused naming dO.
 */
import { attention, attentionBackward, Tensor } from '../../lib/index';
import type { AttentionOptions } from '../../lib/index';
import { forEachBackend, testIf } from '../backends';
import { randomArray, randomQKV } from '../data';
import { roundTo } from '../rounding';

const SHAPE = { batch: 1, heads: 4, kvHeads: 2, seqQ: 90, seqK: 110, headDim: 24, layout: 'bnhd' as const };
const OPTIONS: AttentionOptions = { causal: true, window: 30, globalTokens: 3, blockSize: 64 };
const dimsQ = [1, 90, 4, 24];
const dimsK = [1, 110, 2, 24];

forEachBackend('attentionBackward on device tensors', (be) => {
  const home = be.profile.tensorHome;
  const why = home === 'cpu' ? 'the backend computes on host data' : null;
  const dtype = be.profile.dtypes[0];

  async function run(type: 'float32' | 'float16') {
    const host = randomQKV(SHAPE, 3);
    // The host path uploads in the compute type; float16 tensors hold the same rounded values.
    const [q, k, v] = [host.q, host.k, host.v].map((x) => roundTo(x, dtype));
    const dO = randomArray(q.length, 8);
    const up = (x: Float32Array, dims: number[], t: 'float32' | 'float16') => Tensor.upload(x, dims, { type: t, location: home as 'cuda' | 'cuda-emu' });
    const [tq, tk, tv, tdO] = await Promise.all([up(q, dimsQ, type), up(k, dimsK, type), up(v, dimsK, type), up(dO, dimsQ, 'float32')]);
    const fwd = await attention(tq, tk, tv, { ...OPTIONS, shape: SHAPE, saveForBackward: true, backend: be.name, dtype });
    const onDevice = await attentionBackward(tdO, tq, tk, tv, fwd, { backend: be.name });
    const onHost = await attentionBackward(dO, q, k, v, await attention(q, k, v, { ...OPTIONS, shape: SHAPE, saveForBackward: true, backend: be.name, dtype }), { backend: be.name });
    return { tensors: [tq, tk, tv, tdO], fwd, onDevice, onHost };
  }

  for (const type of ['float32', 'float16'] as const) {
    testIf(why, `${type} tensors: float32 gradient tensors where the inputs live, equal to the host call's`, async () => {
      const { tensors, fwd, onDevice, onHost } = await run(type);
      try {
        for (const [key, dims] of [['dq', dimsQ], ['dk', dimsK], ['dv', dimsK]] as const) {
          const t = onDevice[key];
          expect(t).toBeInstanceOf(Tensor);
          expect({ location: t.location, type: t.type, dims: t.dims }).toEqual({ location: home, type: 'float32', dims });
          expect(Array.from(await t.download())).toEqual(Array.from(onHost[key]));
        }
      } finally {
        for (const t of [...tensors, onDevice.dq, onDevice.dk, onDevice.dv]) t.dispose();
        (fwd.output as Tensor).dispose();
      }
    });
  }

  testIf(why, 'deterministic: the same bits from run to run, with or without the option', async () => {
    const { q, k, v } = randomQKV(SHAPE, 5);
    const dO = randomArray(q.length, 6);
    const fwd = await attention(q, k, v, { ...OPTIONS, shape: SHAPE, blocks: { ratio: 0.5 }, saveForBackward: true, backend: be.name, dtype });
    const a = await attentionBackward(dO, q, k, v, fwd, { backend: be.name });
    const b = await attentionBackward(dO, q, k, v, fwd, { backend: be.name, deterministic: true });
    for (const key of ['dq', 'dk', 'dv'] as const) expect(Array.from(b[key])).toEqual(Array.from(a[key]));
  });

  testIf(why, 'a dO on the host with device inputs is refused, naming dO', async () => {
    const { q, k, v } = randomQKV(SHAPE, 7);
    const up = (x: Float32Array, dims: number[]) => Tensor.upload(x, dims, { location: home as 'cuda' | 'cuda-emu' });
    const [tq, tk, tv] = await Promise.all([up(q, dimsQ), up(k, dimsK), up(v, dimsK)]);
    try {
      const fwd = await attention(tq, tk, tv, { ...OPTIONS, shape: SHAPE, saveForBackward: true, backend: be.name, dtype });
      await expect(attentionBackward(Tensor.fromFloat32(q, dimsQ), tq, tk, tv, fwd, { backend: be.name })).rejects.toMatchObject({ code: 'ERR_OPTION', argument: 'dO' });
      (fwd.output as Tensor).dispose();
    } finally {
      for (const t of [tq, tk, tv]) t.dispose();
    }
  });
});
