// server.h — --serve: the OpenAI-compatible HTTP server over the Scheduler.
#pragma once

#include "moec/cli.h"
#include "moec/manifest.h"
#include "moec/run.h"

namespace moec {

/// --serve; returns the exit code (0 after SIGTERM / Ctrl-C). Throws moec::Error when the
/// binary has no batched step, the address cannot be bound, or the model cannot be loaded.
int serve(const CliOptions &opt, const Manifest &m, const EntryPoints &entry, RunIO &io);

} // namespace moec
