// The GPU routing kernels in the PTX interpreter: top_k with NaN, ±inf, ±0, all-NaN and
// all--inf router rows follows moe.top_k_gating's order (NaN below -inf, ties to the lower
// id) and dispatch counts ids outside [0, E) as E-1, both against plain C++ loops
// (Inputs/routing-ptxemu.cpp). The kernels take E and k at run time, so the tiny model's PTX
// serves any shape.
// REQUIRES: mixtral-compile, ptxemu, cpu-codegen-link
// RUN: mixtral-compile --tiny -o %t.ptx --target nvptx --gpu sm_80 --emit=ptx
// RUN: %clangxx -O1 -w %S/Inputs/routing-ptxemu.cpp -ldl -o %t.exe
// RUN: %t.exe %t.ptx %ptxemu | FileCheck %s

// CHECK-NOT: FAIL
// CHECK: PASS top_k (NaN, inf) T=200
// CHECK: PASS dispatch (ids outside [0, E)) R=34
// CHECK: ALL PASSED
