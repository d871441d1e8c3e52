// The token mask as intervals in j, the same rules as lib/mask.ts: for query row i at key
// position p = i + seqK - seqQ the allowed keys are causal ∩ (window ∪ sinks ∪ selected blocks).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "problem.h"

namespace psa::cpu {

enum class Coverage { None = 0, Partial = 1, Full = 2 };

// Last key row i may see under the causal rule (seqK - 1 when not causal).
inline int causalLimit(const MaskSpec& m, int i) {
  return m.causal ? std::min(i + m.seqK - m.seqQ, m.seqK - 1) : m.seqK - 1;
}

inline int span(int lo, int hi) { return hi >= lo ? hi - lo + 1 : 0; }

// Window [winLo, winHi] and sinks [sinkLo, sinkHi] of row i inside keys [j0, j1], clipped to
// the causal limit; an empty range has hi < lo.
struct WindowSinkRanges {
  int winLo, winHi, sinkLo, sinkHi;
};

inline WindowSinkRanges windowSinkRanges(const MaskSpec& m, int i, int j0, int j1) {
  const int cap = std::min(j1, causalLimit(m, i));
  const int p = i + m.seqK - m.seqQ;
  WindowSinkRanges r{0, -1, j0, std::min(cap, m.globalTokens - 1)};
  if (m.windowLeft >= 0) {
    // In 64 bits: windows may be as wide as 2^31 - 1, past every key.
    r.winLo = static_cast<int>(std::max<long long>(j0, static_cast<long long>(p) - m.windowLeft));
    r.winHi = static_cast<int>(std::min<long long>(cap, static_cast<long long>(p) + m.windowRight));
  }
  return r;
}

inline int windowSinkCount(const MaskSpec& m, int i, int j0, int j1) {
  const WindowSinkRanges r = windowSinkRanges(m, i, j0, j1);
  const int overlap = span(std::max(r.winLo, r.sinkLo), std::min(r.winHi, r.sinkHi));
  return span(r.winLo, r.winHi) + span(r.sinkLo, r.sinkHi) - overlap;
}

inline int causalCount(const MaskSpec& m, int i, int j0, int j1) { return span(j0, std::min(j1, causalLimit(m, i))); }

// Coverage of rows [i0, i1] x keys [j0, j1] for a selected block or a window/sink-only one.
inline Coverage tileCoverage(const MaskSpec& m, int i0, int i1, int j0, int j1, bool selected) {
  const int width = j1 - j0 + 1;
  bool any = false;
  bool all = true;
  for (int i = i0; i <= i1; i++) {
    const int n = selected ? causalCount(m, i, j0, j1) : windowSinkCount(m, i, j0, j1);
    if (n > 0) any = true;
    if (n < width) all = false;
  }
  return all ? Coverage::Full : any ? Coverage::Partial : Coverage::None;
}

// True when some row of [i0, i1] has a causally allowed key in [j0, j1] outside its window and sinks.
inline bool isCandidate(const MaskSpec& m, int i0, int i1, int j0, int j1) {
  for (int i = i0; i <= i1; i++) {
    if (causalCount(m, i, j0, j1) > windowSinkCount(m, i, j0, j1)) return true;
  }
  return false;
}

// ceil(x) forgiving float64 noise just above an integer, as lib/validate.ts ceilTolerant.
inline long long ceilTolerant(double x) {
  return static_cast<long long>(std::ceil(x - 1e-9 * std::fabs(x)));
}

// Set the disallowed scores of rows [i0, i0 + rows) x keys [j0, j1] to -inf; `s` points at
// key j0 of the first row.
inline void maskTile(const MaskSpec& m, float* s, int pitch, int i0, int rows, int j0, int j1, bool selected) {
  const float inf = std::numeric_limits<float>::infinity();
  for (int ii = 0; ii < rows; ii++) {
    const int i = i0 + ii;
    float* row = s + static_cast<std::ptrdiff_t>(ii) * pitch - j0;  // row[j] is key j
    if (selected) {
      for (int j = std::max(j0, std::min(j1, causalLimit(m, i)) + 1); j <= j1; j++) row[j] = -inf;
    } else {
      // The allowed keys are the sinks [j0, sinkHi] and the window [winLo, winHi] (either may
      // be empty): fill the gaps around them.
      const WindowSinkRanges r = windowSinkRanges(m, i, j0, j1);
      auto disallow = [&](int from, int to) {
        if (from <= to) std::fill(row + from, row + to + 1, -inf);
      };
      int next = std::max(j0, r.sinkHi + 1);
      if (r.winLo <= r.winHi) {
        disallow(next, r.winLo - 1);
        next = std::max(next, r.winHi + 1);
      }
      disallow(next, j1);
    }
  }
}

}  // namespace psa::cpu
