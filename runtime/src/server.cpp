// server.cpp — stub.
#include "server.h"

#include "moec/error.h"

namespace moec {

int serve(const CliOptions &, const Manifest &, const EntryPoints &entry, RunIO &) {
  if (!entry.step)
    throw Error("--serve: this binary has no batched step (moec_step)");
  throw Error("--serve: not implemented yet");
}

} // namespace moec
