/**
 * The backward pass of the cuda and cuda-emu backends (docs/backward.md#on-the-device): the
 * forward's problem and kept sets (its layout, its top-k thresholds) as one request to the
 * addon's `backward` (binding/backward.cc → cuda/backward/run_backward.cu), which recomputes the
 * forward's O and LSE, runs the pre-pass, then dK, dV and dQ. Float32Array inputs are uploaded
 * in the compute type and the gradients downloaded; device tensors get float32 device tensors
 * at the same location. Every temporary is disposed on every path.
 */
import { BackendUnavailableError, OptionError } from '../errors';
import type { NativeAddon, NativeAttentionRequest, NativeDeviceTensor } from '../native';
import type { Inputs, Problem } from '../problem';
import { DeviceStorage, Tensor } from '../tensor';
import type { Dtype } from '../types';
import type { Backend, BackendGradients } from './backend';

/** Head dims the device backward kernels run (their dK, dV accumulators live in registers). */
export const DEVICE_BACKWARD_MAX_HEAD_DIM = 128;

interface NativeBackwardRequest extends NativeAttentionRequest {
  /** The forward's top-k thresholds [B, H, Nq]; absent without top-k. */
  thresholds?: Float32Array;
}

interface BackwardAddon extends NativeAddon {
  backward?(q: NativeDeviceTensor, k: NativeDeviceTensor, v: NativeDeviceTensor, dO: NativeDeviceTensor, request: NativeBackwardRequest):
    Promise<{ dq: NativeDeviceTensor; dk: NativeDeviceTensor; dv: NativeDeviceTensor }>;
}

export interface DeviceBackwardHooks {
  flavor: 'cuda' | 'cuda-emu';
  addonOrThrow(): NativeAddon;
  /** Why the device cannot run the forward problem (the forward's own checks), or null. */
  unsupported(p: Problem): string | null;
  requestFor(p: Problem, dtype: Dtype): NativeAttentionRequest;
  deviceInputs(inputs: Inputs, dtype: Dtype, withV: boolean): Promise<{ handles: NativeDeviceTensor[]; owned: NativeDeviceTensor[] }>;
}

/** The `backward` and `backwardUnsupported` methods of a device backend. */
export function deviceBackward(hooks: DeviceBackwardHooks): Required<Pick<Backend, 'backward' | 'backwardUnsupported'>> {
  const { flavor } = hooks;
  return {
    backwardUnsupported(p) {
      if (p.headDim > DEVICE_BACKWARD_MAX_HEAD_DIM) {
        return `head dim ${p.headDim}: the device backward runs head dims up to ${DEVICE_BACKWARD_MAX_HEAD_DIM} (its dK and dV accumulators live in registers)`;
      }
      return hooks.unsupported(p);
    },

    async backward(p, saved, inputs, { dO }): Promise<BackendGradients> {
      const addon = hooks.addonOrThrow() as BackwardAddon;
      if (typeof addon.backward !== 'function') throw new BackendUnavailableError(flavor, 'the loaded addon has no backward entry point; rebuild it: npx psa build');
      if (dO instanceof Tensor && dO.storage instanceof DeviceStorage && dO.location !== flavor) {
        throw new OptionError(`a tensor on '${dO.location}' cannot be used by the '${flavor}' backend`, 'dO');
      }
      const dtype = p.dtype ?? 'float16';
      const request: NativeBackwardRequest = {
        ...hooks.requestFor(p, dtype),
        sparse: saved.layout !== null,
        layout: saved.layout ? { offsets: saved.layout.offsets, indices: saved.layout.indices, flags: saved.layout.flags } : undefined,
        thresholds: p.topK && saved.thresholds ? saved.thresholds : undefined,
      };
      const { handles, owned } = await hooks.deviceInputs(inputs, dtype, true);
      let made: NativeDeviceTensor[] = [];
      try {
        const onDevice = dO instanceof Tensor && dO.storage instanceof DeviceStorage;
        const grad = onDevice ? (dO.storage as DeviceStorage).native : await addon.upload(dO instanceof Tensor ? dO.data : dO, 'float32');
        if (!onDevice) owned.push(grad);
        const g = await addon.backward(handles[0], handles[1], handles[2], grad, request);
        made = [g.dq, g.dk, g.dv];
        if (inputs.kind === 'tensor' && inputs.q.storage instanceof DeviceStorage) {
          const dims = [inputs.q.dims, inputs.k.dims, inputs.v.dims];
          const [dq, dk, dv] = made.map((t, i) => new Tensor(new DeviceStorage(flavor, t), dims[i]));
          made = [];
          return { dq, dk, dv };
        }
        const [dq, dk, dv] = await Promise.all(made.map((t) => t.download()));
        return { dq, dk, dv };
      } finally {
        for (const t of [...owned, ...made]) t.dispose();
      }
    },
  };
}
