//===- MoeOps.h - moe dialect operations ------------------------*- C++ -*-===//
#ifndef MOEC_DIALECT_MOE_MOEOPS_H
#define MOEC_DIALECT_MOE_MOEOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "moec/Dialect/Moe/MoeAttrs.h"
#include "moec/Dialect/Moe/MoeDialect.h"

#define GET_OP_CLASSES
#include "moec/Dialect/Moe/MoeOps.h.inc"

#endif // MOEC_DIALECT_MOE_MOEOPS_H
