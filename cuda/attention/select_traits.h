// Launch shapes of the block selection kernels (select_kernel.cuh), for their launchers
// (select.cu) and the compile gate's occupancy figures.
#pragma once

namespace psa::gpu {

// The most key blocks per row selection supports (size of the per-row sort).
constexpr int kSelectMaxKeyBlocks = 4096;

namespace blocksel {

constexpr int kPoolThreads = 128;
constexpr int kRankThreads = 256;
constexpr int kRowThreads = 128;
constexpr int kScanThreads = 512;
// The rank kernel's dynamic shared memory: a sort key per candidate slot (a power of two of at
// most kSelectMaxKeyBlocks), plus a float64 weight each when progressive.
constexpr int rank_smem_bytes(int capacity, bool progressive) { return capacity * 8 * (progressive ? 2 : 1); }
constexpr int kRankMaxSmemBytes = rank_smem_bytes(kSelectMaxKeyBlocks, true);  // 64 KiB

}  // namespace blocksel
}  // namespace psa::gpu
