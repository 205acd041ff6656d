//===- Weights.cpp - weight operands of the GEMV / GEMM kernels ------------===//
//
// How the matmul kernels read a weight: float weights are loaded and widened; quantized ones
// (#moe.quant, MoeAttrs.td: the one definition of the formats, which the CPU kernels and the
// packer follow too) are loaded as stored and dequantised in registers, `width` elements at a
// time with their group's scale:
//   q8      w = f32(i8) * f32(scale)
//   q4      w = f32(nibble - 8) * f32(scale); the nibble is found by IndexMath.h's q4Byte and
//           q4Shift (low nibbles hold the first half of a group, high nibbles the second)
//   f8e4m3  w = f32(f8) * scale (one f32 scale per row), widened with integer ops since
//           NVPTX has no e4m3 conversion before sm_89
// The products are exact in f32 (at most 11 + 8 significant bits), so rounding them to bf16
// for the tensor cores rounds the dequantised weight once, as the reference does.
//
//===----------------------------------------------------------------------===//

#include "IndexMath.h"
#include "KernelBuilder.h"
#include "QuantRows.h"

#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace mlir::moe::gpu::kernels {

using namespace ::mlir::moe::gpu::index;

void appendWeightParams(SmallVector<Type> &params, Type floatType, QuantAttr quant) {
  if (!quant) {
    params.push_back(kernelMemref(floatType, 3));
    return;
  }
  MLIRContext *ctx = floatType.getContext();
  params.push_back(kernelMemref(quant.dataElementType(ctx), 3));
  params.push_back(kernelMemref(quant.scaleElementType(ctx), 3));
}

WeightOperand weightOperand(::mlir::gpu::GPUFuncOp fn, unsigned &at, QuantAttr quant) {
  WeightOperand w;
  w.data = fn.getArgument(at++);
  if (quant)
    w.scale = fn.getArgument(at++);
  w.quant = quant;
  return w;
}

namespace {

/// vector<width x i8> of e4m3 bit patterns -> vector<width x f32>: normal numbers rebias
/// the exponent (7 -> 127) and move the 3 mantissa bits up; subnormals (exponent 0) are
/// mantissa * 2^-9. NaN (S.1111.111) cannot occur: the packer refuses non-finite weights.
Value widenE4M3(KernelBuilder &b, Value bits, int64_t width) {
  auto i32v = VectorType::get({width}, b.getI32Type());
  auto f32v = VectorType::get({width}, b.getF32Type());
  auto splat = [&](int32_t v) -> Value {
    return arith::ConstantOp::create(b, DenseElementsAttr::get(i32v, b.getI32IntegerAttr(v)));
  };
  Value x = arith::ExtUIOp::create(b, i32v, bits);
  Value sign = arith::ShLIOp::create(b, arith::AndIOp::create(b, x, splat(0x80)), splat(24));
  Value mag = arith::AndIOp::create(b, x, splat(0x7F)); // exponent and mantissa
  Value normal = arith::AddIOp::create(b, arith::ShLIOp::create(b, mag, splat(20)),
                                       splat((127 - 7) << 23));
  Value mant = arith::AndIOp::create(b, x, splat(0x7));
  Value sub = arith::BitcastOp::create(
      b, i32v,
      arith::MulFOp::create(b, arith::UIToFPOp::create(b, f32v, mant),
                            arith::ConstantOp::create(
                                b, DenseElementsAttr::get(f32v, b.getF32FloatAttr(1.0f / 512)))));
  Value isSub = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, mag, splat(0x8));
  Value m = arith::SelectOp::create(b, isSub, sub, normal);
  return arith::BitcastOp::create(b, f32v, arith::OrIOp::create(b, m, sign));
}

} // namespace

Value loadWeightsF32(KernelBuilder &b, const WeightOperand &w, Value g, Value n, Value k,
                     int64_t width) {
  auto f32v = VectorType::get({width}, b.getF32Type());
  Type dt = cast<MemRefType>(w.data.getType()).getElementType();
  llvm::MaybeAlign align(dt.getIntOrFloatBitWidth() / 8 * width);
  if (!w.quant) {
    Value x = vector::LoadOp::create(b, VectorType::get({width}, dt), w.data,
                                     ValueRange{g, n, k}, false, align);
    return convertFloat(b, x, b.getF32Type());
  }
  auto i8v = VectorType::get({width}, b.getI8Type());
  Ix kk = ix(b, k);
  QuantFormat format = w.quant.getFormat();
  int64_t group = w.quant.getGroupSize();
  Value q;
  if (format == QuantFormat::q8) {
    q = arith::SIToFPOp::create(
        b, f32v, vector::LoadOp::create(b, i8v, w.data, ValueRange{g, n, k}, false, align));
  } else if (format == QuantFormat::q4) {
    Value bytes = vector::LoadOp::create(b, i8v, w.data, ValueRange{g, n, q4Byte(kk, group)},
                                         false, align);
    Value shift = vector::BroadcastOp::create(
        b, i8v, arith::IndexCastOp::create(b, b.getI8Type(), q4Shift(kk, group)));
    auto splat = [&](int8_t v) -> Value {
      return arith::ConstantOp::create(b, DenseElementsAttr::get(i8v, b.getI8IntegerAttr(v)));
    };
    Value nibble = arith::AndIOp::create(b, arith::ShRUIOp::create(b, bytes, shift), splat(15));
    q = arith::SIToFPOp::create(b, f32v, arith::SubIOp::create(b, nibble, splat(8)));
  } else {
    Value raw = vector::LoadOp::create(b, VectorType::get({width}, dt), w.data,
                                       ValueRange{g, n, k}, false, align);
    q = widenE4M3(b, arith::BitcastOp::create(b, i8v, raw), width);
  }
  // One scale per group (f8e4m3: per row, at column 0).
  Value at = format == QuantFormat::f8e4m3 ? Value(ix(b, 0)) : Value(kk / group);
  Value s = memref::LoadOp::create(b, w.scale, ValueRange{g, n, at});
  s = convertFloat(b, s, b.getF32Type());
  return arith::MulFOp::create(b, q, vector::BroadcastOp::create(b, f32v, s));
}

int64_t quantLaneElements(QuantAttr quant) {
  if (quant.getFormat() == QuantFormat::f8e4m3)
    return kGemvQuantLoad;
  return quant.getGroupSize() == kGemvQuantGroup ? kGemvQuantGroup : 0;
}

QuantRow loadQuantRow(KernelBuilder &b, const WeightOperand &w, Value g, Value n, Value k) {
  auto i8v = VectorType::get({kGemvQuantLoad}, b.getI8Type());
  auto words = VectorType::get({kGemvQuantLoad / 4}, b.getI32Type());
  Type dt = cast<MemRefType>(w.data.getType()).getElementType();
  QuantFormat format = w.quant.getFormat();
  Ix kk = ix(b, k);
  // q4 packs two elements a byte: the lane's group is bytes [k / 2, k / 2 + 16).
  Ix at = format == QuantFormat::q4 ? kk / 2 : kk;
  int64_t loads = format == QuantFormat::q8 ? 2 : 1;
  QuantRow row;
  for (int64_t i = 0; i < loads; ++i) {
    Value raw = vector::LoadOp::create(b, VectorType::get({kGemvQuantLoad}, dt), w.data,
                                       ValueRange{g, n, at + i * kGemvQuantLoad}, false,
                                       llvm::MaybeAlign(kGemvQuantLoad));
    if (raw.getType() != i8v)
      raw = arith::BitcastOp::create(b, i8v, raw);
    row.data.push_back(vector::BitCastOp::create(b, words, raw));
  }
  if (format != QuantFormat::f8e4m3) // one scale per group; f8e4m3's per row is the caller's
    row.scale = convertFloat(
        b, memref::LoadOp::create(b, w.scale, ValueRange{g, n, kk / w.quant.getGroupSize()}),
        b.getF32Type());
  return row;
}

namespace {

/// Four codes of i32 `word` as f32: code i is the `mask` bits at bit 8i + shift (byte i is
/// element i, little-endian), minus `offset`. Each code goes into the mantissa of 2^23 (bits
/// 0x4B0000xx), so the value is exactly 2^23 + code and one subtraction gives it: no
/// int-to-float conversion, which issues at a quarter of the FP32 rate.
Value bytesToF32(KernelBuilder &b, Value word, int32_t shift, int32_t mask, float offset) {
  auto i32v = VectorType::get({4}, b.getI32Type());
  auto f32v = VectorType::get({4}, b.getF32Type());
  auto consts = [&](ArrayRef<int32_t> v) -> Value {
    return arith::ConstantOp::create(b, DenseElementsAttr::get(i32v, v));
  };
  Value w = vector::BroadcastOp::create(b, i32v, word);
  Value bytes = arith::AndIOp::create(
      b, arith::ShRUIOp::create(b, w, consts({shift, 8 + shift, 16 + shift, 24 + shift})),
      consts({mask, mask, mask, mask}));
  int32_t magic = 0x4B000000;
  Value f = arith::BitcastOp::create(
      b, f32v, arith::OrIOp::create(b, bytes, consts({magic, magic, magic, magic})));
  Value bias = arith::ConstantOp::create(
      b, DenseElementsAttr::get(f32v, b.getF32FloatAttr(8388608.0f + offset)));
  return arith::SubFOp::create(b, f, bias);
}

} // namespace

Value dequantPiece(KernelBuilder &b, const WeightOperand &w, const QuantRow &row, int64_t p) {
  auto word = [&](int64_t i) -> Value {
    return vector::ExtractOp::create(b, row.data[i / 4], i % 4);
  };
  switch (w.quant.getFormat()) {
  case QuantFormat::q8: // signed bytes: flip the sign bit, then code = byte - 128
    return bytesToF32(b, arith::XOrIOp::create(b, word(p), i32(b, int32_t(0x80808080))), 0, 0xFF,
                      128);
  case QuantFormat::q4: // pieces 0-3: low nibbles of words 0-3; 4-7: their high nibbles
    return bytesToF32(b, word(p % 4), p >= 4 ? 4 : 0, 0xF, 8);
  case QuantFormat::f8e4m3: {
    auto i8v = VectorType::get({4}, b.getI8Type());
    Value bytes = vector::BitCastOp::create(
        b, i8v, vector::BroadcastOp::create(b, VectorType::get({1}, b.getI32Type()), word(p)));
    return widenE4M3(b, bytes, 4);
  }
  }
  llvm_unreachable("unknown quant format");
}

} // namespace mlir::moe::gpu::kernels
