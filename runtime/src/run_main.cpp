// run_main.cpp — binds run() to the generated object's exported symbols.
//
// Kept apart from run.cpp so that a program using libmoec_runtime.a without run_main (the unit
// tests) need not define moec_manifest / moec_prefill / moec_decode.
#include "moec/abi.h"
#include "moec/run.h"

#include <iostream>
#include <unistd.h>

// Weak: an object without moec_step (a manifest without "step"; both targets emit it since the
// nvptx one has paged kernels) leaves its address null, and --serve refuses with one line.
extern "C" __attribute__((weak)) void moec_step(void *, void *, int64_t, const int32_t *,
                                                const int32_t *, const int32_t *, int64_t,
                                                const int32_t *, int64_t, float *);

namespace moec {

int run_main(int argc, char **argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  // Whatever the target: the backend that Session makes from the manifest knows whether these
  // take host or device pointers. No backend exists before a mode needs the model, so --help
  // and the tokenizer modes of an nvptx binary work without a GPU.
  const EntryPoints entry{moec_manifest, moec_prefill, moec_decode, moec_step};
  RunIO io{std::cout, std::cerr, ::isatty(2) == 1, &std::cin, ::isatty(0) == 1 && ::isatty(2) == 1};
  return run(args, entry, io, argc > 0 ? argv[0] : "moec");
}

} // namespace moec
