/**
 * onnxruntime-node, when it is installed: from the package's node_modules, or from
 * build-ort/ (`npm install --prefix build-ort --ignore-scripts onnxruntime-node@1.30.0`: the
 * CPU binaries ship in the package; its install script only fetches CUDA libraries).
 */
import { join } from 'node:path';

/** The parts of onnxruntime-node's API the bench uses. */
export interface Ort {
  InferenceSession: {
    create(model: Uint8Array, options: { intraOpNumThreads: number; interOpNumThreads: number; executionMode: 'sequential'; graphOptimizationLevel: 'all' }): Promise<OrtSession>;
  };
  Tensor: new (type: 'float32', data: Float32Array, dims: number[]) => unknown;
  env: { versions?: { node?: string } };
}

export interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: Float32Array }>>;
  release(): Promise<void>;
}

export function loadOrt(root: string): { ort: Ort; path: string } | { reason: string } {
  const reasons: string[] = [];
  for (const dir of [root, join(root, 'build-ort')]) {
    try {
      const path = require.resolve('onnxruntime-node', { paths: [dir] });
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return { ort: require(path) as Ort, path };
    } catch (e) {
      reasons.push(`${dir}: ${String((e as Error).message).split('\n')[0]}`);
    }
  }
  return { reason: `onnxruntime-node is not installed (${reasons.join('; ')})` };
}
