//===- BufferizableOpInterfaceImpl.h - moe ops under one-shot bufferization -*- C++ -*-===//
//
// The BufferizableOpInterface external model of `moe.kernel_call` (destination style: each
// output bufferizes in place into its result), registered beside the dialect so that
// upstream `one-shot-bufferize` turns a function of kernel calls on tensors into one on
// buffers.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_DIALECT_MOE_BUFFERIZABLEOPINTERFACEIMPL_H
#define MOEC_DIALECT_MOE_BUFFERIZABLEOPINTERFACEIMPL_H

namespace mlir {
class DialectRegistry;

namespace moe {
/// Attaches the bufferization model of moe.kernel_call when the moe dialect loads.
void registerBufferizableOpInterfaceExternalModels(DialectRegistry &registry);
} // namespace moe
} // namespace mlir

#endif // MOEC_DIALECT_MOE_BUFFERIZABLEOPINTERFACEIMPL_H
