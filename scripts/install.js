#!/usr/bin/env node
'use strict';
// Install step (npm's "install" script). It never fails the install:
//   1. a prebuild (prebuilds/<platform>-<arch>/) or an earlier build that loads: done;
//   2. else, where cmake and a C++ compiler exist, build from source (CUDA where nvcc is found);
//   3. else keep the JS backend and say once how to get the native one.
// npm 11 may not run this script at all (dependency scripts need approval); the package still
// works then: the prebuild is found at load time, and `psa info` explains the rest.
const path = require('node:path');
const { root, missingTools, compile, loads } = require('./addon-build');

function note(message) {
  console.log(`psa-attention: ${message}`);
}

function existing() {
  try {
    const file = require('node-gyp-build').resolve(root);
    return loads(file) ? file : null;
  } catch {
    return null;
  }
}

function main() {
  if (process.env.PSA_SKIP_BUILD) return note('PSA_SKIP_BUILD is set: not building the native addon (the JS backend works without it)');
  const found = existing();
  if (found) return note(`native addon ready (${path.relative(root, found)})`);
  const missing = missingTools();
  if (missing.length) {
    return note(`no prebuilt addon for ${process.platform}-${process.arch} and no ${missing.join(', ')} to build one: using the JS backend. Install the tools and run \`npx psa build\` for the native backends.`);
  }
  try {
    const file = compile({ quiet: !process.env.PSA_VERBOSE_BUILD });
    if (!loads(file)) throw new Error(`${path.relative(root, file)} was built but does not load`);
    note(`native addon built from source (${path.relative(root, file)})`);
  } catch (e) {
    note(`building the native addon failed; using the JS backend. Run \`npx psa build\` to see the full output.\n  ${String(e.message).split('\n').slice(0, 12).join('\n  ')}`);
  }
}

main();
