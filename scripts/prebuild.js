#!/usr/bin/env node
'use strict';
// Prebuild step: build the addon and place it where node-gyp-build looks
// (prebuilds/<platform>-<arch>/node.napi.node, prebuildify's naming for a Node-API build).
// Run on each platform you publish for, before `npm pack` / `npm publish`.
const fs = require('node:fs');
const path = require('node:path');
const { root, compile, loads, cudaWanted } = require('./addon-build');

// A published prebuild carries every shipped CUDA target, whatever this machine builds for itself.
if (process.env.PSA_CUDA_ARCHS || process.env.npm_config_psa_cuda_archs) {
  console.log('prebuild: ignoring PSA_CUDA_ARCHS (a prebuild carries the full target set)');
  delete process.env.PSA_CUDA_ARCHS;
  delete process.env.npm_config_psa_cuda_archs;
}
const built = compile({ outDir: 'build-prebuild', cuda: cudaWanted() });
if (!loads(built)) {
  console.error(`prebuild: ${built} does not load`);
  process.exit(1);
}
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
fs.mkdirSync(dir, { recursive: true });
const dest = path.join(dir, 'node.napi.node');
fs.copyFileSync(built, dest);
console.log(`prebuild: ${path.relative(root, dest)} (${(fs.statSync(dest).size / 1e6).toFixed(1)} MB)`);
