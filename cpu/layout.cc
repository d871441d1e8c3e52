#include "layout.h"

#include <vector>

#include "mask.h"

namespace psa::cpu {
namespace {

// Coverage of tile (I, J) under one rule, for all tiles: it depends on geometry only.
std::vector<Coverage> coverages(const Problem& p, int bs, int qbs, bool selected) {
  const int nQB = p.numQueryBlocks(qbs);
  const int nKB = p.numKeyBlocks(bs);
  std::vector<Coverage> cov(static_cast<std::size_t>(nQB) * nKB);
  for (int I = 0; I < nQB; I++) {
    const int i1 = std::min(p.seqQ, I * qbs + qbs) - 1;
    for (int J = 0; J < nKB; J++) {
      cov[static_cast<std::size_t>(I) * nKB + J] = tileCoverage(p.mask, I * qbs, i1, J * bs, std::min(p.seqK, J * bs + bs) - 1, selected);
    }
  }
  return cov;
}

}  // namespace

BlockLayout layoutFromChoice(const Problem& p, int bs, int qbs, const ChosenBlocks& chosen) {
  const int nQB = p.numQueryBlocks(qbs);
  const int nKB = p.numKeyBlocks(bs);
  const std::vector<Coverage> ws = coverages(p, bs, qbs, false);
  const std::vector<Coverage> causal = coverages(p, bs, qbs, true);
  BlockLayout out;
  out.blockSize = bs;
  out.queryBlockSize = qbs;
  out.offsets.assign(static_cast<std::size_t>(p.batch) * p.heads * nQB + 1, 0);
  std::size_t r = 0;
  for (int b = 0; b < p.batch; b++) {
    for (int h = 0; h < p.heads; h++) {
      for (int I = 0; I < nQB; I++, r++) {
        const std::uint8_t* pick = chosen(b, h, I);
        for (int J = 0; J < nKB; J++) {
          const bool selected = pick && pick[J];
          const Coverage cov = (selected ? causal : ws)[static_cast<std::size_t>(I) * nKB + J];
          if (cov == Coverage::None) continue;
          out.indices.push_back(J);
          out.flags.push_back((selected ? kBlockSelected : 0) | (cov == Coverage::Full ? kBlockFull : 0));
        }
        out.offsets[r + 1] = static_cast<std::int32_t>(out.indices.size());
      }
    }
  }
  return out;
}

BlockLayout denseLayout(const Problem& p, int bs, int qbs) {
  const int nKB = p.numKeyBlocks(bs);
  const std::vector<Coverage> causal = coverages(p, bs, qbs, true);
  std::vector<std::uint8_t> chosen(causal.size());
  for (std::size_t t = 0; t < causal.size(); t++) chosen[t] = causal[t] != Coverage::None;
  return layoutFromChoice(p, bs, qbs, [&](int, int, int I) { return chosen.data() + static_cast<std::size_t>(I) * nKB; });
}

BlockLayout windowSinkLayout(const Problem& p, int bs, int qbs) {
  return layoutFromChoice(p, bs, qbs, [](int, int, int) -> const std::uint8_t* { return nullptr; });
}

}  // namespace psa::cpu
