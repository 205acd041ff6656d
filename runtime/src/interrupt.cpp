// interrupt.cpp — InterruptGuard (see interrupt.h).
#include "interrupt.h"

namespace moec {
namespace {

volatile std::sig_atomic_t g_sigints = 0;

void on_sigint(int) {
  if (++g_sigints < 2)
    return;
  std::signal(SIGINT, SIG_DFL); // the second Ctrl-C: end the process as if no handler were here
  std::raise(SIGINT);
}

} // namespace

InterruptGuard::InterruptGuard() {
  g_sigints = 0;
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESTART; // a token's write(2) is not cut short; the loop checks the flag
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &previous_);
  if (previous_.sa_handler == SIG_IGN) // started in the background (`cmd &`): stay deaf to it
    ::sigaction(SIGINT, &previous_, nullptr);
}

InterruptGuard::~InterruptGuard() {
  ::sigaction(SIGINT, &previous_, nullptr);
  g_sigints = 0;
}

bool InterruptGuard::requested() const { return g_sigints > 0; }

} // namespace moec
