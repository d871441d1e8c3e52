/** The js backend: the reference on the calling thread, float32. */
import type { Inputs } from '../problem';
import { layoutFor, runReference } from '../reference';
import { backward } from '../reference/backward';
import type { Backend } from './backend';

/** Host float32 views of the inputs (device tensors are read back). */
async function hostData(inputs: Inputs): Promise<Float32Array[]> {
  if (inputs.kind === 'host') return [inputs.q, inputs.k, inputs.v];
  return Promise.all([inputs.q.download(), inputs.k.download(), inputs.v.download()]);
}

export const jsBackend: Backend = {
  status: () => ({ name: 'js', available: true, reason: 'JS reference, float32, on the calling thread', dtypes: ['float32'] }),
  async attention(p, inputs) {
    const [q, k, v] = await hostData(inputs);
    return runReference(p, q, k, v);
  },
  async buildLayout(p, inputs) {
    const [q, k] = await hostData(inputs);
    return layoutFor(p, q, k);
  },
  async backward(p, saved, inputs, { dO }) {
    // The reference is deterministic: one thread, a fixed order.
    const [[q, k, v], grad] = await Promise.all([hostData(inputs), dO instanceof Float32Array ? dO : dO.download()]);
    return backward(p, saved.layout ?? layoutFor(p, q, k), saved.thresholds, q, k, v, grad);
  },
};
