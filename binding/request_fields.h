// Reading the fields of an object handed over by lib/ (a request, a host cache): each one
// checked, a bad one refused with a coded error naming it ("request.<key>", "cache.<key>"). The
// addon is reachable on its own, so everything is validated here again before anything runs.
#pragma once

#include <napi.h>

#include <climits>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <string>

#include "addon_state.h"

namespace psa::binding::fields {

// The largest integer a JS number holds exactly.
constexpr long long kMaxSafeInteger = 9007199254740991LL;

[[noreturn]] inline void bad(Napi::Env env, const char* kind, const std::string& key, const std::string& what, const char* owner = "request") {
  AddonState::of(env).raise(env, kind, std::string(owner) + "." + key, std::string(owner) + ": " + key + " " + what);
}

inline Napi::Object object(Napi::Env env, const Napi::Value& v, const char* what, const char* owner = "request") {
  if (!v.IsObject()) AddonState::of(env).raise(env, "option", owner, std::string(what) + " must be an object");
  return v.As<Napi::Object>();
}

inline double number(Napi::Env env, const Napi::Object& o, const char* key, const char* owner = "request") {
  const Napi::Value v = o.Get(key);
  if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) bad(env, "option", key, "must be a finite number", owner);
  return v.As<Napi::Number>().DoubleValue();
}

// An integer in min..max (both within the safe-integer range).
inline long long whole(Napi::Env env, const Napi::Object& o, const char* key, long long min, long long max, const char* kind = "option", const char* owner = "request") {
  const Napi::Value v = o.Get(key);
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max) && d == std::floor(d))) {
    bad(env, kind, key, "must be an integer in " + std::to_string(min) + ".." + std::to_string(max), owner);
  }
  return static_cast<long long>(d);
}

inline int integer(Napi::Env env, const Napi::Object& o, const char* key, int min, int max, const char* kind = "option", const char* owner = "request") {
  return static_cast<int>(whole(env, o, key, min, max, kind, owner));
}

inline bool flag(const Napi::Object& o, const char* key) { return o.Get(key).ToBoolean().Value(); }

// The product of `dims`, or a shape error naming `key` when it exceeds what one tensor can hold.
inline std::size_t product(Napi::Env env, const char* key, std::initializer_list<long long> dims, const char* owner = "request") {
  unsigned long long n = 1;
  for (long long d : dims) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<unsigned long long>(d), &n) || n > (1ull << 53)) bad(env, "shape", key, "holds more elements than a tensor can", owner);
  }
  return static_cast<std::size_t>(n);
}

}  // namespace psa::binding::fields
