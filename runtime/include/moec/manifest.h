// moec/manifest.h — the compiled model's description, parsed from `moec_manifest`.
//
// The generated object embeds a JSON manifest (schema in moec/abi.h), written by the compiler
// and read here through the shared checkpoint library (moec/checkpoint/manifest.h), which
// validates it completely, so the rest of the runtime can trust it.
#pragma once

#include "moec/checkpoint/manifest.h"
#include "moec/dtype.h"

#include <string_view>

namespace moec {

using ModelConfig = checkpoint::ModelConfig;
using WeightTensor = checkpoint::WeightTensor;
using Manifest = checkpoint::Manifest;

/// Parses and validates a manifest; throws moec::Error "manifest: <problem>".
Manifest parse_manifest(std::string_view json_text);

} // namespace moec
