//===- MoeDialect.cpp - the moe dialect -----------------------------------===//
#include "moec/Dialect/Moe/MoeDialect.h"
#include "moec/Dialect/Moe/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace mlir::moe;

#include "moec/Dialect/Moe/MoeOpsDialect.cpp.inc"

void MoeDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "moec/Dialect/Moe/MoeOps.cpp.inc"
      >();
}
