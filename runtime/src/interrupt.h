// interrupt.h — Ctrl-C while the model generates: the first SIGINT asks the generation to stop
// (the generate loop and --chat check between tokens), a second one ends the process the
// usual way, so a run stuck in a long compiled call (a prefill chunk) can still be killed.
//
// The handler only sets a flag (async-signal-safe); an InterruptGuard installs it for its
// lifetime and restores the previous action after, so Ctrl-C anywhere else (loading weights,
// --chat's prompt) keeps its default meaning: end the process.
#pragma once

#include <csignal>

namespace moec {

class InterruptGuard {
public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard &) = delete;
  InterruptGuard &operator=(const InterruptGuard &) = delete;

  /// A SIGINT arrived since the guard was made.
  bool requested() const;

private:
  struct sigaction previous_ {};
};

} // namespace moec
