// cuda_capture.h — between the mgpu* functions (cuda_mgpu.cpp) and StepGraph (cuda_graph.cpp):
// while a StepGraph captures, the mgpu* functions route the generated code's streams and
// temporaries to it. Internal to the runtime.
#pragma once

#include "moec/cuda.h"

#include <cstddef>

namespace moec::cuda::detail {

/// From here until end_mgpu_capture, mgpuStreamCreate returns `stream` (which is capturing),
/// mgpuStreamSynchronize/Destroy of it do nothing, and mgpuMemAlloc/Free serve offsets of the
/// arena at `base` (first fit, from empty; the arena is not bounded here: the caller compares
/// end_mgpu_capture's high-water mark with its size and drops a capture that outgrew it).
/// Only on the calling thread (the capture mode is thread-local too).
void begin_mgpu_capture(CUstream stream, CUdeviceptr base);
/// Ends it; returns the bytes the capture's temporaries needed at most (its high-water mark).
std::size_t end_mgpu_capture();

/// Counters of launch_counts() that StepGraph advances.
enum class GraphEvent { Capture, Update, Instantiate, Launch };
void count(GraphEvent event);

} // namespace moec::cuda::detail
