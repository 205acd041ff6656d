// backend.cpp — the target enum, the backend factory, and the defaults of moec/backend.h.
#include "moec/backend.h"

#include "moec/error.h"

namespace moec {

Target target_of(const Manifest &m) {
  // parse_manifest accepts "cpu" and "nvptx" only.
  return m.target == "nvptx" ? Target::Nvptx : Target::Cpu;
}

std::unique_ptr<Backend> make_backend(const Manifest &manifest, const EntryPoints &entry) {
  switch (target_of(manifest)) {
  case Target::Cpu:
    return make_cpu_backend(manifest, entry);
  case Target::Nvptx:
    return make_cuda_backend(manifest, entry); // loads the CUDA driver
  }
  throw Error("internal: unknown target");
}

void Backend::allocate_kv_pool(std::uint64_t) {
  throw Error("--serve: this backend has no batched step");
}

void Backend::step(std::int64_t, const std::int32_t *, const std::int32_t *, const std::int32_t *,
                   std::int64_t, const std::int32_t *, std::int64_t, float *) {
  throw Error("--serve: this backend has no batched step");
}

} // namespace moec
