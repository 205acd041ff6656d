//===- MoeDialect.h - the moe dialect ---------------------------*- C++ -*-===//
#ifndef MOEC_DIALECT_MOE_MOEDIALECT_H
#define MOEC_DIALECT_MOE_MOEDIALECT_H

#include "mlir/IR/Dialect.h"

#include "moec/Dialect/Moe/MoeOpsDialect.h.inc"

#endif // MOEC_DIALECT_MOE_MOEDIALECT_H
