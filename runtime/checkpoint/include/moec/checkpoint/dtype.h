// moec/checkpoint/dtype.h — element types as they appear in safetensors headers and in the
// manifest; the one dtype enum of the compiler and the runtime.
//
// safetensors spells dtypes in upper case ("BF16"), the manifest in lower case ("bf16").
// Only the float types in `is_weight_dtype` may be used for weights; the rest are recognised so
// that a checkpoint holding them still opens, and rejected when a manifest asks for them.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace moec {

enum class DType { F32, BF16, F16, F64, I64, I32, I16, I8, U8, Bool, F8E4M3, F8E5M2 };

/// Bytes per element.
std::size_t dtype_size(DType t);
/// Lower-case name as used in the manifest and in messages ("bf16").
const char *dtype_name(DType t);
/// Upper-case safetensors spelling ("BF16").
const char *safetensors_dtype_name(DType t);
/// Parses a safetensors dtype string ("F32", "BF16", ...); nullopt if unknown.
std::optional<DType> parse_safetensors_dtype(std::string_view s);
/// Parses a manifest dtype string; only "f32", "bf16", "f16" are accepted.
std::optional<DType> parse_weight_dtype(std::string_view s);
/// True for the dtypes the generated code can consume as weights.
bool is_weight_dtype(DType t);

} // namespace moec
