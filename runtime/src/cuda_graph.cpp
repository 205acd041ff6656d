// cuda_graph.cpp — StepGraph (moec/cuda.h): one generated call's launches captured into a CUDA
// graph, replayed or updated on later calls, with the direct launches as the fallback.
//
// Two streams: the capture runs on a non-blocking stream (capture rules concern only that
// stream; nothing else is ordered with it), the graph launches on a blocking one, which waits
// for the legacy-stream uploads of the call's inputs (cuMemcpyHtoD, see mgpuStreamCreate) as
// the generated code's own stream would.
#include "moec/cuda.h"

#include "cuda_capture.h"
#include "moec/error.h"

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
  if (exec_)
    api.cuGraphExecDestroy(exec_);
  if (stream_)
    api.cuStreamDestroy(stream_);
  if (capture_stream_)
    api.cuStreamDestroy(capture_stream_);
}

void StepGraph::disable(const std::string &why) {
  std::fprintf(stderr, "moec: CUDA graphs off, kernels are launched one by one: %s\n",
               why.c_str());
  enabled_ = false;
  if (exec_)
    driver_.api().cuGraphExecDestroy(exec_);
  exec_ = nullptr;
}

bool StepGraph::grow_arena(std::size_t bytes) {
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

bool StepGraph::install(CUgraph graph) {
  const DriverApi &api = driver_.api();
  if (exec_) {
    CUgraphExecUpdateResultInfo info{};
    if (api.cuGraphExecUpdate(exec_, graph, &info) == 0) {
      detail::count(detail::GraphEvent::Update);
      return true;
    }
    api.cuGraphExecDestroy(exec_); // another topology (or a refused update): instantiate afresh
    exec_ = nullptr;
  }
  const CUresult r = api.cuGraphInstantiateWithFlags(&exec_, graph, 0);
  if (r != 0) {
    exec_ = nullptr;
    disable(driver_.describe(r, "cuGraphInstantiateWithFlags"));
    return false;
  }
  detail::count(detail::GraphEvent::Instantiate);
  return true;
}

bool StepGraph::run_erased(const std::vector<std::uint64_t> &key, void (*call)(void *),
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
  if (!exec_ || key != key_) {
    CUgraph graph = capture(call, arg);
    if (!graph)
      return false;
    const bool installed = install(graph);
    api.cuGraphDestroy(graph);
    if (!installed)
      return false;
    key_ = key;
  }
  const CUresult r = api.cuGraphLaunch(exec_, stream_);
  if (r != 0) {
    disable(driver_.describe(r, "cuGraphLaunch"));
    return false;
  }
  detail::count(detail::GraphEvent::Launch);
  driver_.check(api.cuStreamSynchronize(stream_), "cuStreamSynchronize (a kernel failed)");
  return true;
}

} // namespace moec::cuda
