// pack_weights.cpp — OUT.weights for a --quantize binary, written on the GPU machine.
//
//   pack_weights MANIFEST.json CHECKPOINT_DIR OUT.weights
//
// tools/gpu-check carries the quantized benchmark binaries without their packed files (a
// Mixtral-shaped layer in q4 is ~1 GB, the bundle's budget 60 MB); prepare.sh saves each
// binary's manifest (which holds the fingerprint that binds the file to it), and run.sh packs
// the checkpoint that make_checkpoint wrote there with the compiler's own packer
// (moec/checkpoint/pack.h: the same code mixtral-compile runs, so the same bytes). Static
// C++ with no dependency beyond libc, like make_checkpoint. Exit 0 ok, 1 error, 2 usage;
// errors are one `error: ...` line; the file appears only when complete (temporary + rename).
#include "moec/checkpoint/manifest.h"
#include "moec/checkpoint/pack.h"
#include "moec/checkpoint/safetensors.h"

#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

namespace {

int fail(const std::string &message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 1;
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: pack_weights MANIFEST.json CHECKPOINT_DIR OUT.weights\n");
    return 2;
  }
  const std::string manifestPath = argv[1], ckptDir = argv[2], out = argv[3];
  std::ifstream in(manifestPath, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in)
    return fail(manifestPath + ": cannot read");
  auto manifest = moec::checkpoint::parse_manifest(text.str());
  if (!manifest)
    return fail(manifestPath + ": " + manifest.error());
  if (!manifest->weights_file)
    return fail(manifestPath + ": the manifest names no packed weights file");
  auto headers = moec::checkpoint::read_checkpoint_headers(ckptDir);
  if (!headers)
    return fail(headers.error());
  const std::string tmp = out + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return fail(tmp + ": cannot create");
  auto stats = moec::checkpoint::pack_weights(*manifest, *headers, fd, out);
  ::close(fd);
  if (!stats) {
    ::unlink(tmp.c_str());
    return fail(stats.error());
  }
  if (::rename(tmp.c_str(), out.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return fail(out + ": cannot rename the temporary into place");
  }
  std::printf("packed %s: %.1f MB from %.1f MB of checkpoint (%u threads)\n", out.c_str(),
              stats->file_bytes / 1e6, stats->source_bytes / 1e6, stats->threads);
  return 0;
}
