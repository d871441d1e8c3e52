// Tile shape and shared memory of the Tensor Core matmul check (mma_matmul.cu), for its
// launcher and the compile gate's occupancy figures.
#pragma once

namespace psa::gpu::mma_check {

constexpr int kTile = 64;
constexpr int kPad = 8;                // halves of padding per shared row: spreads rows over banks
constexpr int kStride = kTile + kPad;  // 72 halves = 144 bytes, a multiple of 16 for ldmatrix
constexpr int kThreads = 128;
constexpr int kTileHalves = kTile * kStride;
constexpr int kSmemBytes = 4 * kTileHalves * 2;  // A and B, two stages each: 36864

}  // namespace psa::gpu::mma_check
