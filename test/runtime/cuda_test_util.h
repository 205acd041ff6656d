// cuda_test_util.h — helpers for the tests that load the fake libcuda (cuda_fake_driver.cpp):
// running a scenario in a forked child (the driver path and the fake's counters are per
// process) and reading the fake's counters.
#pragma once

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace moec::test {

/// The fake libcuda built beside the tests.
inline const char *const kFakeCuda = MOEC_FAKE_CUDA_DRIVER;

using Env = std::vector<std::pair<std::string, std::string>>;

/// $MOEC_CUDA_DRIVER = the fake, with one device.
inline Env fake_gpu_env() {
  return {{"MOEC_CUDA_DRIVER", kFakeCuda}, {"MOEC_FAKE_CUDA_DEVICES", "1"}};
}

/// Runs `body` in a child process with `env` set; returns what it returned, or "threw: <what>"
/// for an exception, or "child died" if it crashed.
inline std::string in_child(const Env &env, const std::function<std::string()> &body) {
  int fds[2];
  if (::pipe(fds) != 0)
    return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    for (auto &[k, v] : env)
      ::setenv(k.c_str(), v.c_str(), 1);
    std::string out;
    try {
      out = body();
    } catch (const std::exception &e) {
      out = std::string("threw: ") + e.what();
    }
    (void)!::write(fds[1], out.data(), out.size());
    ::close(fds[1]);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
    out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "child died: " + out;
  return out;
}

/// A moec_fake_* function of the fake, from the copy this process loaded (-1 / 0 if none).
template <typename F> F fake_cuda_symbol(const char *name) {
  void *h = ::dlopen(kFakeCuda, RTLD_NOW | RTLD_NOLOAD);
  return h ? reinterpret_cast<F>(::dlsym(h, name)) : nullptr;
}
/// How often the fake's `call` ran (cuCtxSetCurrent, cuModuleLoadDataEx, cuModuleGetFunction,
/// cuMemAllocAsync, cuMemAlloc, cuMemFreeAsync, cuMemFree); -1 if the fake is not loaded.
inline int fake_cuda_count(const char *call) {
  auto f = fake_cuda_symbol<int (*)(const char *)>("moec_fake_count");
  return f ? f(call) : -1;
}
inline int fake_cuda_launches() {
  auto f = fake_cuda_symbol<int (*)()>("moec_fake_launches");
  return f ? f() : -1;
}
inline int fake_cuda_grid(int i) {
  auto f = fake_cuda_symbol<int (*)(int)>("moec_fake_grid");
  return f ? f(i) : -1;
}
inline unsigned fake_cuda_stream_flags() {
  auto f = fake_cuda_symbol<unsigned (*)()>("moec_fake_stream_flags");
  return f ? f() : ~0u;
}
/// True if this process has loaded the fake libcuda (dlopen without loading).
inline bool fake_cuda_loaded() { return fake_cuda_symbol<void *>("moec_fake_count") != nullptr; }

} // namespace moec::test
