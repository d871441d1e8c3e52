#include "counters.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>

#include "engine.h"

namespace psa::emu {

// True when [p, p + n) lies inside one live device allocation (runtime.cc).
bool is_device_memory(const void* p, std::size_t n);

namespace {

constexpr unsigned kBanks = 32;
constexpr unsigned kBankBytes = 4;
constexpr unsigned kWavefrontBytes = kBanks * kBankBytes;  // 128
constexpr unsigned kSectorBytes = 32;

std::atomic<bool> g_enabled{false};
std::mutex g_mutex;  // the records below (OS threads of one block run at once in the threads build)
CounterSnapshot g_snapshot;
KernelCounters* g_current = nullptr;  // the running launch's record, or null

enum class Space { Shared, Global };

// A source site of one kind of access.
struct SiteKey {
  const char* file;
  unsigned line, column;
  Access kind;
  bool operator<(const SiteKey& o) const { return std::tie(file, line, column, kind) < std::tie(o.file, o.line, o.column, o.kind); }
};

// The lanes of one warp instruction.
struct Pending {
  Space space = Space::Shared;
  unsigned bytes = 0;
  std::vector<LaneAccess> lanes;
};

// Per block: each (warp, lane)'s visits per site, and the lanes of each warp instruction.
std::map<std::tuple<unsigned, unsigned, SiteKey>, std::uint32_t> g_visits;  // (warp, lane, site) -> times reached
std::map<std::tuple<unsigned, SiteKey, std::uint32_t>, Pending> g_pending;  // (warp, site, n) -> its lanes

void add_shared(SharedTraffic& t, const SharedCost& c, std::uint64_t bytes) {
  t.requests++;
  t.wavefronts += c.wavefronts;
  t.ideal += c.ideal;
  t.bytes += bytes;
  t.maxWays = std::max(t.maxWays, c.ways);
}

void add_global(GlobalTraffic& t, const GlobalCost& c) {
  t.requests++;
  t.sectors += c.sectors;
  t.bytesUsed += c.bytesUsed;
}

void cost_instruction(KernelCounters& k, const SiteKey& site, const Pending& p) {
  if (p.lanes.empty()) return;  // every lane predicated off
  const std::uint64_t bytes = static_cast<std::uint64_t>(p.bytes) * p.lanes.size();
  if (p.space == Space::Shared) {
    const SharedCost c = shared_cost(p.lanes, p.bytes, site.kind == Access::Atomic);
    SharedTraffic& t = site.kind == Access::Load ? k.sharedLoad : site.kind == Access::Store ? k.sharedStore : site.kind == Access::Atomic ? k.sharedAtomic : k.cpAsyncShared;
    add_shared(t, c, bytes);
  } else {
    const GlobalCost c = global_cost(p.lanes, p.bytes);
    GlobalTraffic& t = site.kind == Access::Load ? k.globalLoad : site.kind == Access::Store ? k.globalStore : site.kind == Access::Atomic ? k.globalAtomic : k.cpAsyncGlobal;
    add_global(t, c);
    if (site.kind == Access::CpAsync) k.cpAsyncBytes += bytes;
  }
}

std::string strip_namespaces(std::string s) {
  for (const char* ns : {"psa::gpu::", "psa::", "MmaType::"}) {
    const std::string n = ns;
    for (std::size_t at; (at = s.find(n)) != std::string::npos;) s.erase(at, n.size());
  }
  return s;
}

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(' ');
  const auto b = s.find_last_not_of(' ');
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

}  // namespace

std::string kernel_name(const char* spelled, const char* launcher) {
  std::string name = spelled;
  if (name.size() > 1 && name.front() == '(' && name.back() == ')') name = name.substr(1, name.size() - 2);
  // GCC: "... [with Traits = psa::gpu::ForwardTraits<64>; psa::gpu::MmaType T = psa::gpu::MmaType::F16; bool Causal = true]".
  const std::string fn = launcher;
  const auto with = fn.find("[with ");
  const auto open = name.find('<');
  if (with == std::string::npos || open == std::string::npos || name.back() != '>') return strip_namespaces(name);
  std::map<std::string, std::string> bound;
  std::string list = fn.substr(with + 6, fn.size() - with - 7);
  for (std::size_t start = 0; start <= list.size();) {
    std::size_t end = list.find("; ", start);
    if (end == std::string::npos) end = list.size();
    const std::string item = list.substr(start, end - start);
    const auto eq = item.find(" = ");
    if (eq != std::string::npos) {
      std::string param = item.substr(0, eq);
      param = param.substr(param.find_last_of(' ') == std::string::npos ? 0 : param.find_last_of(' ') + 1);
      bound[param] = strip_namespaces(item.substr(eq + 3));
    }
    start = end + 2;
  }
  std::string out = name.substr(0, open + 1);
  const std::string args = name.substr(open + 1, name.size() - open - 2);
  std::size_t start = 0;
  for (bool first = true; start <= args.size(); first = false) {
    std::size_t end = args.find(',', start);
    if (end == std::string::npos) end = args.size();
    const std::string arg = trim(args.substr(start, end - start));
    out += (first ? "" : ", ") + (bound.count(arg) ? bound[arg] : strip_namespaces(arg));
    start = end + 1;
  }
  return out + ">";
}

SharedCost shared_cost(const std::vector<LaneAccess>& lanes, unsigned bytes, bool serialise) {
  SharedCost c;
  if (lanes.empty()) return c;
  const unsigned perPhase = bytes <= kBankBytes ? 32 : kWavefrontBytes / bytes;
  // phase -> bank -> words (distinct unless serialised)
  std::map<unsigned, std::map<unsigned, std::vector<std::uintptr_t>>> phases;
  for (const LaneAccess& l : lanes) {
    auto& banks = phases[l.lane / perPhase];
    for (std::uintptr_t w = l.address / kBankBytes; w <= (l.address + bytes - 1) / kBankBytes; ++w) banks[static_cast<unsigned>(w % kBanks)].push_back(w);
  }
  for (auto& [phase, banks] : phases) {
    unsigned worst = 0;
    for (auto& [bank, words] : banks) {
      if (!serialise) {
        std::sort(words.begin(), words.end());
        words.erase(std::unique(words.begin(), words.end()), words.end());
      }
      worst = std::max(worst, static_cast<unsigned>(words.size()));
    }
    c.wavefronts += worst;
    c.ideal += 1;
    c.ways = std::max(c.ways, worst);
  }
  return c;
}

GlobalCost global_cost(const std::vector<LaneAccess>& lanes, unsigned bytes) {
  std::vector<std::uintptr_t> used;
  used.reserve(lanes.size() * bytes);
  for (const LaneAccess& l : lanes) {
    for (unsigned i = 0; i < bytes; ++i) used.push_back(l.address + i);
  }
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  GlobalCost c;
  c.bytesUsed = static_cast<unsigned>(used.size());
  std::uintptr_t last = 0;
  for (std::size_t i = 0; i < used.size(); ++i) {
    const std::uintptr_t sector = used[i] / kSectorBytes;
    if (i == 0 || sector != last) c.sectors++;
    last = sector;
  }
  return c;
}

void counters_enable(bool on) {
  std::lock_guard<std::mutex> g(g_mutex);
  g_snapshot = CounterSnapshot{};
  g_current = nullptr;
  g_visits.clear();
  g_pending.clear();
  g_enabled = on;
}

bool counters_enabled() { return g_enabled; }

CounterSnapshot counters_take() {
  std::lock_guard<std::mutex> g(g_mutex);
  CounterSnapshot out = std::move(g_snapshot);
  g_snapshot = CounterSnapshot{};
  g_current = nullptr;
  return out;
}

std::vector<KernelCounters> counters_by_kernel(const std::vector<KernelCounters>& launches) {
  std::vector<KernelCounters> out;
  auto sum_shared = [](SharedTraffic& a, const SharedTraffic& b) {
    a.requests += b.requests;
    a.wavefronts += b.wavefronts;
    a.ideal += b.ideal;
    a.bytes += b.bytes;
    a.maxWays = std::max(a.maxWays, b.maxWays);
  };
  auto sum_global = [](GlobalTraffic& a, const GlobalTraffic& b) {
    a.requests += b.requests;
    a.sectors += b.sectors;
    a.bytesUsed += b.bytesUsed;
  };
  for (const KernelCounters& l : launches) {
    auto it = std::find_if(out.begin(), out.end(), [&](const KernelCounters& k) { return k.name == l.name; });
    if (it == out.end()) {
      out.push_back(l);
      continue;
    }
    KernelCounters& k = *it;
    k.launches += l.launches;
    k.ctas += l.ctas;
    k.tensorFlops += l.tensorFlops;
    sum_shared(k.ldmatrix, l.ldmatrix);
    sum_shared(k.sharedLoad, l.sharedLoad);
    sum_shared(k.sharedStore, l.sharedStore);
    sum_shared(k.sharedAtomic, l.sharedAtomic);
    sum_shared(k.cpAsyncShared, l.cpAsyncShared);
    sum_global(k.globalLoad, l.globalLoad);
    sum_global(k.globalStore, l.globalStore);
    sum_global(k.globalAtomic, l.globalAtomic);
    sum_global(k.cpAsyncGlobal, l.cpAsyncGlobal);
    k.cpAsyncBytes += l.cpAsyncBytes;
    k.barriers += l.barriers;
    k.exp2 += l.exp2;
  }
  return out;
}

void count_launch_begin(const char* spelled, const char* launcher, unsigned long long ctas) {
  if (!g_enabled) return;
  std::string name = kernel_name(spelled, launcher);
  std::lock_guard<std::mutex> g(g_mutex);
  g_snapshot.launches.emplace_back();
  g_current = &g_snapshot.launches.back();
  g_current->name = std::move(name);
  g_current->launches = 1;
  g_current->ctas = ctas;
}

void count_launch_end() {
  if (!g_enabled) return;
  count_flush_block();
  std::lock_guard<std::mutex> g(g_mutex);
  g_current = nullptr;
}

void count_lane_access(Access kind, unsigned warp, unsigned lane, const void* address, unsigned bytes, std::source_location site) {
  if (!g_enabled) return;
  // Dynamic shared memory, else device memory; anything else a kernel touches is a static __shared__.
  const Space space = !address || in_shared(address, bytes) || !is_device_memory(address, bytes) ? Space::Shared : Space::Global;
  const SiteKey key{site.file_name(), site.line(), site.column(), kind};
  std::lock_guard<std::mutex> g(g_mutex);
  if (!g_current) return;
  const std::uint32_t n = g_visits[{warp, lane, key}]++;
  Pending& p = g_pending[{warp, key, n}];
  if (!address) return;
  p.space = space;
  p.bytes = bytes;
  p.lanes.push_back(LaneAccess{lane, reinterpret_cast<std::uintptr_t>(address)});
}

void count_flush_block() {
  if (!g_enabled) return;
  std::lock_guard<std::mutex> g(g_mutex);
  if (g_current) {
    for (const auto& [key, pending] : g_pending) cost_instruction(*g_current, std::get<1>(key), pending);
  }
  g_pending.clear();
  g_visits.clear();
}

void count_barrier() {
  if (!g_enabled) return;
  count_flush_block();
  std::lock_guard<std::mutex> g(g_mutex);
  if (g_current) g_current->barriers++;
}

void count_ldmatrix(const std::vector<LaneAccess>& rows) {
  if (!g_enabled) return;
  const SharedCost c = shared_cost(rows, 16, false);
  std::lock_guard<std::mutex> g(g_mutex);
  if (g_current) add_shared(g_current->ldmatrix, c, 16ull * rows.size());
}

void count_tensor_flops(std::uint64_t flops) {
  if (!g_enabled) return;
  std::lock_guard<std::mutex> g(g_mutex);
  if (g_current) g_current->tensorFlops += flops;
}

void count_exp2() {
  if (!g_enabled) return;
  std::lock_guard<std::mutex> g(g_mutex);
  if (g_current) g_current->exp2++;
}

void count_host(HostEvent event) {
  if (!g_enabled) return;
  std::lock_guard<std::mutex> g(g_mutex);
  HostCounters& h = g_snapshot.host;
  (event == HostEvent::Allocation ? h.allocations : event == HostEvent::Free ? h.frees : event == HostEvent::HandOut ? h.handOuts : h.syncs)++;
}

}  // namespace psa::emu
