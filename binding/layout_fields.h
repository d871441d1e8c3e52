// A block layout handed to the addon (offsets, indices, flags), copied and checked against the
// call's geometry before any kernel indexes with it: the CUDA and cpu bindings both read layouts
// here, so a layout the addon accepts is one every backend can walk.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "host_array.h"
#include "request_fields.h"

namespace psa::binding::fields {

struct LayoutArrays {
  std::vector<std::int32_t> offsets;  // rows + 1, from 0, not decreasing, ending at indices.size()
  std::vector<std::int32_t> indices;  // key blocks, each in 0..keyBlocks-1
  std::vector<std::uint8_t> flags;    // one per index
};

// `owner` names the object holding `layout` ("request", or "saved" for the backward's).
inline LayoutArrays read_layout(Napi::Env env, const Napi::Object& l, std::size_t rows, long long keyBlocks, const char* owner = "request") {
  const std::string at = std::string(owner) + ".layout.";
  LayoutArrays a;
  a.offsets = copy_host_array<std::int32_t>(env, l.Get("offsets"), napi_int32_array, at + "offsets", "an Int32Array");
  a.indices = copy_host_array<std::int32_t>(env, l.Get("indices"), napi_int32_array, at + "indices", "an Int32Array");
  a.flags = copy_host_array<std::uint8_t>(env, l.Get("flags"), napi_uint8_array, at + "flags", "a Uint8Array");
  if (a.offsets.size() != rows + 1) bad(env, "shape", "layout.offsets", "must hold " + std::to_string(rows + 1) + " entries (rows + 1)", owner);
  if (a.offsets[0] != 0 || static_cast<std::size_t>(a.offsets[rows]) != a.indices.size()) bad(env, "shape", "layout.offsets", "must start at 0 and end at the number of indices", owner);
  for (std::size_t i = 0; i < rows; i++) {
    if (a.offsets[i + 1] < a.offsets[i]) bad(env, "shape", "layout.offsets", "must not decrease (row " + std::to_string(i) + ")", owner);
  }
  for (std::size_t i = 0; i < a.indices.size(); i++) {
    if (a.indices[i] < 0 || a.indices[i] >= keyBlocks) {
      bad(env, "shape", "layout.indices", "entry " + std::to_string(i) + " is not a key block (0.." + std::to_string(keyBlocks - 1) + ")", owner);
    }
  }
  if (a.flags.size() != a.indices.size()) bad(env, "shape", "layout.flags", "must hold one flag per index", owner);
  return a;
}

}  // namespace psa::binding::fields
