// run_main.cpp — binds run() to the generated object's exported symbols.
//
// Kept apart from run.cpp so that a program using libmoec_runtime.a without run_main (the unit
// tests) need not define moec_manifest / moec_prefill / moec_decode.
#include "moec/abi.h"
#include "moec/cuda.h"
#include "moec/run.h"

#include <iostream>
#include <unistd.h>

// Weak: an object compiled for nvptx does not define moec_step, and then its address is null.
extern "C" __attribute__((weak)) void moec_step(void *, void *, int64_t, const int32_t *,
                                                const int32_t *, const int32_t *, int64_t,
                                                const int32_t *, int64_t, float *);

namespace moec {

int run_main(int argc, char **argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  EntryPoints entry{moec_manifest, moec_prefill, moec_decode, moec_step};
  // --target nvptx: the generated functions take device pointers; the CUDA driver is loaded
  // on the first call, so --help and the tokenizer modes work without a GPU.
  if (cuda::manifest_targets_gpu(moec_manifest))
    entry = cuda::device_entry_points(entry);
  RunIO io{std::cout, std::cerr, ::isatty(2) == 1, &std::cin, ::isatty(0) == 1 && ::isatty(2) == 1};
  return run(args, entry, io, argc > 0 ? argv[0] : "moec");
}

} // namespace moec
