//===- MoeDialect.cpp - the moe dialect -----------------------------------===//
#include "moec/Dialect/Moe/MoeDialect.h"
#include "moec/Dialect/Moe/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"

#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;

#include "moec/Dialect/Moe/MoeOpsDialect.cpp.inc"
#include "moec/Dialect/Moe/MoeEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "moec/Dialect/Moe/MoeAttrs.cpp.inc"

void MoeDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "moec/Dialect/Moe/MoeAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "moec/Dialect/Moe/MoeOps.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// #moe.quant
//===----------------------------------------------------------------------===//

LogicalResult QuantAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                QuantFormat format, int64_t groupSize) {
  if (format == QuantFormat::f8e4m3) {
    if (groupSize != 0)
      return emitError() << "expects no group size for f8e4m3 (one scale per output row, "
                            "whatever K is), but it is "
                         << groupSize << ".";
    return success();
  }
  if (groupSize != 32)
    return emitError() << "expects group size 32 for " << stringifyQuantFormat(format)
                       << " (the format's layout), but it is " << groupSize << ".";
  return success();
}

//===----------------------------------------------------------------------===//
// #moe.panels
//===----------------------------------------------------------------------===//

LogicalResult PanelsAttr::verify(function_ref<InFlightDiagnostic()> emitError, int64_t cols,
                                 int64_t lanes) {
  if (cols < 1 || lanes < 1)
    return emitError() << "expects positive cols and lanes, but they are " << cols << " and "
                       << lanes << ".";
  return success();
}

Type QuantAttr::dataElementType(MLIRContext *ctx) const {
  if (getFormat() == QuantFormat::f8e4m3)
    return Float8E4M3FNType::get(ctx);
  return IntegerType::get(ctx, 8);
}

Type QuantAttr::scaleElementType(MLIRContext *ctx) const {
  if (getFormat() == QuantFormat::f8e4m3)
    return Float32Type::get(ctx);
  return Float16Type::get(ctx);
}
