// Block layouts as lib/layout.ts and lib/reference build them, bit for bit: the CSR of key
// blocks per (batch, head, query block) with SELECTED and FULL flags.
#pragma once

#include <cstdint>
#include <functional>

#include "problem.h"

namespace psa::cpu {

// For one (b, h, I): nKB bytes, nonzero where selection chose key block J; null: none chosen.
using ChosenBlocks = std::function<const std::uint8_t*(int b, int h, int queryBlock)>;

// Every builder takes the key block size and the query block size (rows per layout row); the
// two-argument forms use blockSize for both.

// BlockLayout.fromSelection: the chosen blocks with their causal coverage, plus the window and
// sink blocks; every chosen block must hold a causally allowed key (the caller's selection does).
BlockLayout layoutFromChoice(const Problem& p, int blockSize, int queryBlockSize, const ChosenBlocks& chosen);
inline BlockLayout layoutFromChoice(const Problem& p, int blockSize, const ChosenBlocks& chosen) { return layoutFromChoice(p, blockSize, blockSize, chosen); }

// Every block with a causally allowed pair, all SELECTED (the dense pass of lib/reference).
BlockLayout denseLayout(const Problem& p, int blockSize, int queryBlockSize);
inline BlockLayout denseLayout(const Problem& p, int blockSize) { return denseLayout(p, blockSize, blockSize); }

// Window and sinks alone (sparse without a selection).
BlockLayout windowSinkLayout(const Problem& p, int blockSize, int queryBlockSize);
inline BlockLayout windowSinkLayout(const Problem& p, int blockSize) { return windowSinkLayout(p, blockSize, blockSize); }

}  // namespace psa::cpu
