//===- MixtralConfig.h - a Mixtral config.json, validated -------*- C++ -*-===//
//
// The model's hyper-parameters, as the shared checkpoint library (runtime/checkpoint, also
// linked into every compiled binary) parses and validates them: the compiler and the runtime
// read config.json with the same code, so they accept exactly the same files. This header
// only adapts the library's results to llvm::Error.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_MODELS_MIXTRALCONFIG_H
#define MOEC_MODELS_MIXTRALCONFIG_H

#include "moec/checkpoint/config.h"
#include "moec/checkpoint/dtype.h"
#include "moec/checkpoint/result.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

namespace moec {

/// Storage type of the weights: the shared dtype enum (F32, BF16, F16 are the weight types).
using WeightType = DType;
/// The model's hyper-parameters (Hugging Face config.json names).
using MixtralConfig = checkpoint::ModelConfig;

/// A library failure as an llvm::Error (the message is the library's one line).
inline llvm::Error toLLVMError(const checkpoint::Failure &f) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), f.message);
}
template <class T> llvm::Expected<T> toExpected(checkpoint::Result<T> r) {
  if (!r)
    return toLLVMError(r.failure());
  return std::move(*r);
}

/// config.json at `path`, parsed and validated.
inline llvm::Expected<MixtralConfig> loadMixtralConfig(llvm::StringRef path) {
  return toExpected(checkpoint::load_config(path.str()));
}

} // namespace moec

#endif // MOEC_MODELS_MIXTRALCONFIG_H
