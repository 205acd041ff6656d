// quant.cpp — the format table behind moec/checkpoint/quant.h.
#include "moec/checkpoint/quant.h"

namespace moec {

const char *quant_format_name(QuantFormat f) {
  switch (f) {
  case QuantFormat::Q8:
    return "q8";
  case QuantFormat::Q4:
    return "q4";
  case QuantFormat::F8E4M3:
    return "f8e4m3";
  case QuantFormat::None:
    break;
  }
  return "none";
}

std::optional<QuantFormat> parse_quant_format(std::string_view s) {
  for (QuantFormat f : {QuantFormat::Q8, QuantFormat::Q4, QuantFormat::F8E4M3})
    if (s == quant_format_name(f))
      return f;
  return std::nullopt;
}

DType quant_data_dtype(QuantFormat f) {
  return f == QuantFormat::Q8 ? DType::I8 : f == QuantFormat::Q4 ? DType::U8 : DType::F8E4M3;
}

DType quant_scale_dtype(QuantFormat f) { return f == QuantFormat::F8E4M3 ? DType::F32 : DType::F16; }

std::int64_t quant_group_size(QuantFormat f, std::int64_t k) {
  return f == QuantFormat::F8E4M3 ? k : kQuantGroupSize;
}

const char *quant_shape_problem(QuantFormat f, const std::vector<std::int64_t> &shape) {
  if (f == QuantFormat::None)
    return "it is not a quantized format";
  if (shape.size() < 2)
    return "a quantized weight has at least two dimensions [..., N, K]";
  for (std::int64_t d : shape)
    if (d < 0)
      return "a dimension is negative";
  const std::int64_t k = shape.back();
  if (k == 0)
    return "K is 0";
  if (f != QuantFormat::F8E4M3 && k % kQuantGroupSize != 0)
    return "K is not a multiple of the group size 32";
  return "";
}

std::optional<QuantBytes> quant_bytes(QuantFormat f, const std::vector<std::int64_t> &shape) {
  if (*quant_shape_problem(f, shape))
    return std::nullopt;
  std::uint64_t rows = 1; // product of [..., N]
  for (std::size_t i = 0; i + 1 < shape.size(); ++i)
    if (__builtin_mul_overflow(rows, static_cast<std::uint64_t>(shape[i]), &rows))
      return std::nullopt;
  const auto k = static_cast<std::uint64_t>(shape.back());
  const std::uint64_t row_data = f == QuantFormat::Q4 ? k / 2 : k;
  const std::uint64_t row_scale =
      f == QuantFormat::F8E4M3 ? 4 : k / static_cast<std::uint64_t>(kQuantGroupSize) * 2;
  QuantBytes b;
  if (__builtin_mul_overflow(rows, row_data, &b.data) ||
      __builtin_mul_overflow(rows, row_scale, &b.scale))
    return std::nullopt;
  return b;
}

double bits_per_weight(QuantFormat f, std::int64_t k) {
  switch (f) {
  case QuantFormat::Q8:
    return 8.0 + 16.0 / kQuantGroupSize;
  case QuantFormat::Q4:
    return 4.0 + 16.0 / kQuantGroupSize;
  case QuantFormat::F8E4M3:
    return 8.0 + 32.0 / static_cast<double>(k > 0 ? k : 1);
  case QuantFormat::None:
    break;
  }
  return 0.0;
}

} // namespace moec
