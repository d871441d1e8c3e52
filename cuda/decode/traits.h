// Launch shapes of the decode kernels, shared by their launchers, the check program and the
// compile gate (shared memory from here, not from a guess).
#pragma once

#include <cstddef>

namespace psa::gpu::decode {

constexpr int kThreads = 128;  // 4 warps per CTA, every decode kernel but the plan
constexpr int kWarps = kThreads / 32;
// The plan runs one CTA per selection unit, so a step has few of them (32 at batch 1 with 32
// query heads) and the walk's latency decides its time: 16 warps score 16 ordered pages per
// step of the walk, a quarter of the barriers and serial steps of 4 warps.
constexpr int kPlanThreads = 512;
constexpr int kPlanWarps = kPlanThreads / 32;
// The progressive walk's first round scores the ordered pages up to the stop the estimates
// predict plus kPlanWalkMargin, at most kPlanFirstRound (16 a warp: f_row 12.5% at 64k); while
// the exact walk goes further, rounds of kPlanWalkRound pages follow, doubled each time
// (cuda/PERF.md#decode has the measurements behind the figures).
constexpr int kPlanWalkMargin = 4;
constexpr int kPlanFirstRound = 16 * kPlanWarps;
constexpr int kPlanWalkRound = kPlanWarps;
// Query rows packed into one attention CTA: the heads of a kv group times the step's queries
// (GQA 8 with one query fills it), so each page is read once for all of them.
constexpr int kTileRows = 8;
// Pages one row's selection sorts in shared memory (64k tokens at pages of 32 use 2048).
constexpr int kMaxPlanPages = 4096;
// Largest page the attention CTA stages in shared memory, in tokens.
constexpr int kMaxPageSize = 128;

constexpr std::size_t pow2_at_least(std::size_t n) {
  std::size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Plan: sort keys and indices (a power of two), suffix masses and the chosen-page flags.
constexpr std::size_t plan_shared_bytes(int pages) {
  return pow2_at_least(static_cast<std::size_t>(pages > 0 ? pages : 1)) * 8 + static_cast<std::size_t>(pages + 1) * 4 + static_cast<std::size_t>(pages) * 8;
}

// Dynamic shared memory every target grants a CTA (sm_86 and sm_89 opt in to 99 KB).
constexpr std::size_t kMaxSharedBytes = 99 * 1024;

// Attention: q rows and accumulators in float32, one page of keys and values in 16 bits, scores.
constexpr std::size_t attention_shared_bytes(int pageSize, int headDim) {
  return static_cast<std::size_t>(kTileRows) * headDim * 4 * 2 + static_cast<std::size_t>(pageSize) * headDim * 2 * 2 +
         static_cast<std::size_t>(kTileRows) * pageSize * 4;
}

}  // namespace psa::gpu::decode
