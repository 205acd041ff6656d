// manifest.cpp — parse_manifest: the shared reader (moec/checkpoint/manifest.h), throwing.
#include "moec/manifest.h"

#include "moec/error.h"

namespace moec {

Manifest parse_manifest(std::string_view text) {
  checkpoint::Result<Manifest> m = checkpoint::parse_manifest(text);
  if (!m)
    throw Error(m.error());
  return std::move(*m);
}

} // namespace moec
