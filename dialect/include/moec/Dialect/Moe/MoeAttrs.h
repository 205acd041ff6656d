//===- MoeAttrs.h - moe dialect attributes ----------------------*- C++ -*-===//
#ifndef MOEC_DIALECT_MOE_MOEATTRS_H
#define MOEC_DIALECT_MOE_MOEATTRS_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectImplementation.h"

#include "moec/Dialect/Moe/MoeEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "moec/Dialect/Moe/MoeAttrs.h.inc"

#endif // MOEC_DIALECT_MOE_MOEATTRS_H
