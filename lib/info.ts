/** What this installation can do: version and each backend's availability with its reason. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { backendStatuses, BackendStatus } from './backends';

export interface Info {
  version: string;
  node: string;
  platform: string;
  backends: BackendStatus[];
  /** The backend `auto` resolves to for float32. */
  autoBackend: string;
}

export function info(): Info {
  const version = packageVersion();
  const backends = backendStatuses();
  const preferred = ['cuda', 'cpu', 'js'].map((n) => backends.find((b) => b.name === n)!).find((b) => b.available && b.dtypes.includes('float32'));
  return { version, node: process.version, platform: `${process.platform}-${process.arch}`, backends, autoBackend: preferred?.name ?? 'none' };
}

/** The version in our package.json, found upward from this file (it sits at lib/ in source and dist/lib/ when built). */
function packageVersion(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'psa-attention') return pkg.version ?? 'unknown';
    }
  }
  return 'unknown';
}
