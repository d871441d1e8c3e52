/** Our package's root (where package.json names psa-attention), found upward from this file: lib/ in source, dist/lib/ when built. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

let cached: { root: string; version: string } | undefined;

function find(): { root: string; version: string } {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (!existsSync(file)) continue;
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'psa-attention') return { root: dir, version: pkg.version ?? 'unknown' };
  }
  return { root: join(__dirname, '..'), version: 'unknown' };
}

export function packageRoot(): string {
  return (cached ??= find()).root;
}

export function packageVersion(): string {
  return (cached ??= find()).version;
}
