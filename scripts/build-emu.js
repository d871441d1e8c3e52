#!/usr/bin/env node
'use strict';
// Build the emulated addon and the kernel check programs into build-emu/ (tests only; never
// shipped). Where cmake, a C++ compiler or the CUDA headers are missing it says so; outside CI
// it then exits 0 and the cuda-emu tests skip with that reason, but under CI=true it exits 1:
// a green CI run must mean the kernels ran.
const fs = require('node:fs');
const path = require('node:path');
const { root, missingTools, compile } = require('./addon-build');

const missing = missingTools();
const headers = ['/usr/local/cuda/include', process.env.CUDA_HOME && path.join(process.env.CUDA_HOME, 'include')].filter(Boolean);
if (!headers.some((d) => fs.existsSync(path.join(d, 'cuda_runtime_api.h')))) missing.push('the CUDA headers');
if (missing.length) {
  const why = `${missing.join(', ')} not found`;
  if (process.env.CI === 'true') {
    console.error(`psa-attention: CI=true and the emulated addon cannot be built: ${why}`);
    process.exit(1);
  }
  console.log(`psa-attention: not building the emulated addon: ${why}`);
  process.exit(0);
}
try {
  compile({ outDir: 'build-emu', cuda: false, emulated: true, quiet: !process.env.PSA_VERBOSE_BUILD });
  console.log(`psa-attention: emulated build ready (${path.relative(root, path.join(root, 'build-emu'))})`);
} catch (e) {
  console.error(`psa-attention: the emulated build failed:\n${e.message}`);
  process.exit(1);
}
