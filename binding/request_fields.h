// Reading the fields of a request object handed over by lib/ (kv_cache.cc, decode.cc): each one
// checked, a bad one refused with a coded error naming it ("request.<key>"). The addon is
// reachable on its own, so a request is validated here again before anything runs.
#pragma once

#include <napi.h>

#include <climits>
#include <cmath>
#include <string>

#include "addon_state.h"

namespace psa::binding::fields {

[[noreturn]] inline void bad(Napi::Env env, const char* kind, const std::string& key, const std::string& what) {
  AddonState::of(env).raise(env, kind, "request." + key, "request: " + key + " " + what);
}

inline Napi::Object object(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsObject()) AddonState::of(env).raise(env, "option", "request", std::string(what) + " must be an object");
  return v.As<Napi::Object>();
}

inline double number(Napi::Env env, const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) bad(env, "option", key, "must be a finite number");
  return v.As<Napi::Number>().DoubleValue();
}

inline int integer(Napi::Env env, const Napi::Object& o, const char* key, int min, int max, const char* kind = "option") {
  const Napi::Value v = o.Get(key);
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= min && d <= max && d == std::floor(d))) bad(env, kind, key, "must be an integer in " + std::to_string(min) + ".." + std::to_string(max));
  return static_cast<int>(d);
}

inline bool flag(const Napi::Object& o, const char* key) { return o.Get(key).ToBoolean().Value(); }

}  // namespace psa::binding::fields
