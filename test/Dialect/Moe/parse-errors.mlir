// Malformed IR gets parser diagnostics from moe-opt, never a crash.
// RUN: not moe-opt %s -split-input-file 2>&1 | FileCheck %s

// CHECK: error: expected ':'
func.func @missing_types(%x: tensor<?x16xf32>, %g: tensor<8x16xf32>) {
  %0 = moe.router %x, %g
  return
}

// -----

// CHECK: error: 'moe.top_k_gating' op requires attribute 'k'
func.func @missing_k(%l: tensor<?x8xf32>) {
  %w, %i = moe.top_k_gating %l : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  return
}

// -----

// CHECK: error: 'moe.dispatch' op requires attribute 'num_experts'
func.func @generic_form(%i: tensor<?x2xi32>) {
  %p, %o = "moe.dispatch"(%i) : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<9xi32>)
  return
}

// -----

// CHECK: error: expected ','
func.func @wrong_arity(%g: tensor<?x8xf32>) {
  %0 = moe.swiglu %g : (tensor<?x8xf32>) -> tensor<?x8xf32>
  return
}
