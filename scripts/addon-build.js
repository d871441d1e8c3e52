'use strict';
// Shared by the install step, the prebuild step and `psa build`: find the tools, run cmake-js.
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');

const root = path.join(__dirname, '..');

/** The first directory on PATH holding `name`, or null. */
function which(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  return null;
}

/** What a source build needs and lacks: [] when cmake, a C++ compiler and cmake-js are all here. */
function missingTools() {
  const missing = [];
  if (!which('cmake')) missing.push('cmake');
  if (!which('c++') && !which('g++') && !which('clang++')) missing.push('a C++ compiler');
  try {
    require.resolve('cmake-js/package.json', { paths: [root] });
  } catch {
    missing.push('the cmake-js package');
  }
  return missing;
}

/** CUDA is built unless PSA_CUDA or npm config psa_cuda says off/0/false. */
function cudaWanted() {
  const v = String(process.env.PSA_CUDA ?? process.env.npm_config_psa_cuda ?? 'on').toLowerCase();
  return !['off', '0', 'false', 'no'].includes(v);
}

/**
 * The CUDA targets to build for, from PSA_CUDA_ARCHS or npm config psa_cuda_archs (CMake's
 * CUDA_ARCHITECTURES syntax: `80-real;86-real;90`, `89`), or null for CMakeLists.txt's default
 * (SASS for sm_80/86/89/90 and compute_90 PTX). One target is enough on a machine that builds
 * for its own GPU, and compiles in about a quarter of the time.
 */
function cudaArchs() {
  const v = process.env.PSA_CUDA_ARCHS ?? process.env.npm_config_psa_cuda_archs;
  if (v === undefined || v === '') return null;
  const list = String(v).split(/[;,\s]+/).filter(Boolean);
  if (!list.length || !list.every((a) => /^\d{2,3}(-real|-virtual)?$/.test(a))) {
    throw new Error(`PSA_CUDA_ARCHS must list CUDA architectures such as "80-real;90" (got ${JSON.stringify(v)})`);
  }
  return list.join(';');
}

/**
 * Runs `cmake-js compile` into `outDir` (relative to the package root) and returns the path of
 * the built .node, or throws with the tool's output.
 */
function compile({ outDir = 'build', cuda = cudaWanted(), emulated = false, quiet = false } = {}) {
  const cli = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  const archs = cuda && !emulated ? cudaArchs() : null;
  const args = [cli, 'compile', '-O', outDir, `--CDPSA_CUDA=${cuda ? 'ON' : 'OFF'}`, `--CDPSA_EMULATED=${emulated ? 'ON' : 'OFF'}`, `--CDPSA_CUDA_ARCHS=${archs ?? ''}`];
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: quiet ? 'pipe' : 'inherit', encoding: 'utf8' });
  if (r.status !== 0) {
    const out = quiet ? `\n${(r.stdout || '').slice(-4000)}${(r.stderr || '').slice(-4000)}` : '';
    throw new Error(`cmake-js compile failed (exit ${r.status})${out}`);
  }
  return path.join(root, outDir, 'Release', 'psa_attention.node');
}

/** True when `file` loads as our addon in a fresh process (a broken build must not be kept). */
function loads(file) {
  const code = `const a=require(${JSON.stringify(file)}); if (typeof a.info !== 'function') process.exit(3); a.info();`;
  return spawnSync(process.execPath, ['-e', code], { stdio: 'ignore' }).status === 0;
}

module.exports = { root, which, missingTools, cudaWanted, cudaArchs, compile, loads };
