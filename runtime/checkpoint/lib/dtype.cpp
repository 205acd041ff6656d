// dtype.cpp — the dtype tables behind moec/checkpoint/dtype.h.
#include "moec/checkpoint/dtype.h"

namespace moec {
namespace {
struct DTypeRow {
  DType type;
  const char *safetensors; // spelling in safetensors headers
  const char *name;        // spelling in the manifest and in messages
  std::size_t size;        // bytes per element
};
constexpr DTypeRow kRows[] = {
    {DType::F32, "F32", "f32", 4},          {DType::BF16, "BF16", "bf16", 2},
    {DType::F16, "F16", "f16", 2},          {DType::F64, "F64", "f64", 8},
    {DType::I64, "I64", "i64", 8},          {DType::I32, "I32", "i32", 4},
    {DType::I16, "I16", "i16", 2},          {DType::I8, "I8", "i8", 1},
    {DType::U8, "U8", "u8", 1},             {DType::Bool, "BOOL", "bool", 1},
    {DType::F8E4M3, "F8_E4M3", "f8_e4m3", 1}, {DType::F8E5M2, "F8_E5M2", "f8_e5m2", 1},
};
const DTypeRow &row(DType t) {
  for (const DTypeRow &r : kRows)
    if (r.type == t)
      return r;
  return kRows[0]; // unreachable: every enumerator has a row
}
} // namespace

std::size_t dtype_size(DType t) { return row(t).size; }
const char *dtype_name(DType t) { return row(t).name; }
const char *safetensors_dtype_name(DType t) { return row(t).safetensors; }

std::optional<DType> parse_safetensors_dtype(std::string_view s) {
  for (const DTypeRow &r : kRows)
    if (s == r.safetensors)
      return r.type;
  return std::nullopt;
}

std::optional<DType> parse_weight_dtype(std::string_view s) {
  for (const DTypeRow &r : kRows)
    if (s == r.name && is_weight_dtype(r.type))
      return r.type;
  return std::nullopt;
}

bool is_weight_dtype(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

} // namespace moec
