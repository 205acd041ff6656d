// cuda_graph.cpp — StepGraph (moec/cuda.h): one generated call's launches captured into a CUDA
// graph per recent shape, replayed or updated on later calls, with the direct launches as the
// fallback.
//
// Two streams: the capture runs on a non-blocking stream (capture rules concern only that
// stream; nothing else is ordered with it), the graph launches on a blocking one, which waits
// for the legacy-stream uploads of the call's inputs (cuMemcpyHtoD, see mgpuStreamCreate) as
// the generated code's own stream would.
#include "moec/cuda.h"

#include "cuda_capture.h"
#include "moec/error.h"

#include <algorithm>
#include <cstdio>

namespace moec::cuda {
namespace {

constexpr int kCaptureModeThreadLocal = 1; // CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
constexpr unsigned kStreamNonBlocking = 1; // CU_STREAM_NON_BLOCKING
constexpr std::size_t kArenaGranule = std::size_t(1) << 20;

} // namespace

StepGraph::StepGraph(Driver &driver) : driver_(driver) {
  if (driver.api().has_graphs())
    enabled_ = true;
  else
    std::fprintf(stderr, "moec: this CUDA driver has no graph entry points "
                         "(cuStreamBeginCapture_v2, cuGraphExecUpdate_v2, ...): kernels are "
                         "launched one by one\n");
}

StepGraph::~StepGraph() {
  const DriverApi &api = driver_.api();
  driver_.make_current();
  drop_graphs();
  if (stream_)
    api.cuStreamDestroy(stream_);
  if (capture_stream_)
    api.cuStreamDestroy(capture_stream_);
}

void StepGraph::drop_graphs() {
  for (Entry &e : graphs_)
    driver_.api().cuGraphExecDestroy(e.exec);
  graphs_.clear();
}

void StepGraph::disable(const std::string &why) {
  std::fprintf(stderr, "moec: CUDA graphs off, kernels are launched one by one: %s\n",
               why.c_str());
  enabled_ = false;
  drop_graphs();
}

bool StepGraph::grow_arena(std::size_t bytes) {
  drop_graphs(); // they name addresses in the old arena
  try {
    arena_ = DeviceBuffer(); // the old one first: the two need not fit together
    arena_ = DeviceBuffer(driver_, (bytes + kArenaGranule - 1) / kArenaGranule * kArenaGranule);
    return true;
  } catch (const Error &e) {
    disable(std::string("no device memory for the captured call's temporaries: ") + e.what());
    return false;
  }
}

CUgraph StepGraph::capture(void (*call)(void *), void *arg) {
  const DriverApi &api = driver_.api();
  // At most twice: a capture that outgrew the arena is taken again in a large enough one
  // (the same call sequence needs the same bytes).
  for (int attempt = 0; attempt < 2; ++attempt) {
    CUresult r = api.cuStreamBeginCapture(capture_stream_, kCaptureModeThreadLocal);
    if (r != 0) {
      disable(driver_.describe(r, "cuStreamBeginCapture"));
      return nullptr;
    }
    detail::begin_mgpu_capture(capture_stream_, arena_.ptr());
    call(arg);
    const std::size_t need = detail::end_mgpu_capture();
    CUgraph graph = nullptr;
    r = api.cuStreamEndCapture(capture_stream_, &graph);
    const std::string err = take_mgpu_error(); // a call inside the capture the driver refused
    if (r != 0 || !err.empty() || !graph) {
      if (graph)
        api.cuGraphDestroy(graph);
      disable(!err.empty() ? err : driver_.describe(r, "cuStreamEndCapture"));
      return nullptr;
    }
    detail::count(detail::GraphEvent::Capture);
    if (need <= arena_.size())
      return graph;
    api.cuGraphDestroy(graph);
    if (!grow_arena(need))
      return nullptr;
  }
  disable("internal: a captured call needed more temporaries on its second capture");
  return nullptr;
}

StepGraph::Entry *StepGraph::install(const std::vector<std::uint64_t> &shape, CUgraph graph) {
  const DriverApi &api = driver_.api();
  auto same = std::find_if(graphs_.begin(), graphs_.end(),
                           [&](const Entry &e) { return e.shape == shape; });
  if (same != graphs_.end()) { // the same shape, other arguments: update in place
    CUgraphExecUpdateResultInfo info{};
    if (api.cuGraphExecUpdate(same->exec, graph, &info) == 0) {
      detail::count(detail::GraphEvent::Update);
      return &*same;
    }
    api.cuGraphExecDestroy(same->exec); // another topology or a refused update: afresh
    graphs_.erase(same);
  }
  if (graphs_.size() == kMaxGraphs) { // the least recently used shape goes
    auto lru = std::min_element(graphs_.begin(), graphs_.end(), [](const Entry &a, const Entry &b) {
      return a.last_used < b.last_used;
    });
    api.cuGraphExecDestroy(lru->exec);
    graphs_.erase(lru);
  }
  Entry e;
  e.shape = shape;
  const CUresult r = api.cuGraphInstantiateWithFlags(&e.exec, graph, 0);
  if (r != 0) {
    disable(driver_.describe(r, "cuGraphInstantiateWithFlags"));
    return nullptr;
  }
  detail::count(detail::GraphEvent::Instantiate);
  graphs_.push_back(std::move(e));
  return &graphs_.back();
}

bool StepGraph::run_erased(const std::vector<std::uint64_t> &shape,
                           const std::vector<std::uint64_t> &args, void (*call)(void *),
                           void *arg) {
  if (!enabled_)
    return false;
  const DriverApi &api = driver_.api();
  driver_.make_current();
  if (!stream_) {
    driver_.check(api.cuStreamCreate(&stream_, 0), "cuStreamCreate");
    driver_.check(api.cuStreamCreate(&capture_stream_, kStreamNonBlocking), "cuStreamCreate");
    if (!grow_arena(kArenaGranule))
      return false;
  }
  auto hit = std::find_if(graphs_.begin(), graphs_.end(), [&](const Entry &e) {
    return e.shape == shape && e.args == args;
  });
  Entry *entry = hit != graphs_.end() ? &*hit : nullptr;
  if (!entry) {
    CUgraph graph = capture(call, arg);
    if (!graph)
      return false;
    entry = install(shape, graph);
    api.cuGraphDestroy(graph);
    if (!entry)
      return false;
    entry->args = args;
  }
  entry->last_used = ++clock_;
  const CUresult r = api.cuGraphLaunch(entry->exec, stream_);
  if (r != 0) {
    disable(driver_.describe(r, "cuGraphLaunch"));
    return false;
  }
  detail::count(detail::GraphEvent::Launch);
  driver_.check(api.cuStreamSynchronize(stream_), "cuStreamSynchronize (a kernel failed)");
  return true;
}

} // namespace moec::cuda
