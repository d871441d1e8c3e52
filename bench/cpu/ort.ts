/**
 * onnxruntime-node, a dev dependency (its CPU binaries ship in the package; package.json's
 * allowScripts denies its postinstall, which only fetches CUDA libraries), when it is installed.
 */
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
  try {
    const path = require.resolve('onnxruntime-node', { paths: [root] });
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return { ort: require(path) as Ort, path };
  } catch (e) {
    return { reason: `onnxruntime-node is not installed (${String((e as Error).message).split('\n')[0]}); it is a dev dependency: \`npm install\` in the package installs it` };
  }
}
