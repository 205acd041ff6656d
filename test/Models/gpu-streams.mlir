// Each entry point of an nvptx binary, after the whole GPU pipeline (the canonicalizer
// included), creates one stream, synchronises it before returning and destroys it: the
// canonicalizer erases a wait on a dependency-free token, and without the synchronise a call
// could return before its kernels finish, and without the destroy every call leaks a stream.
// REQUIRES: mixtral-compile
// RUN: rm -rf %t && mkdir -p %t
// RUN: mixtral-compile --tiny --target nvptx --gpu sm_80 --emit=llvm -o %t/tiny.ll
// RUN: FileCheck %s < %t/tiny.ll

// CHECK-LABEL: define void @moec_prefill(
// CHECK:         %[[S:[0-9]+]] = call ptr @mgpuStreamCreate()
// CHECK-NOT:     @mgpuStream{{Create|Destroy}}
// CHECK:         call void @mgpuStreamSynchronize(ptr %[[S]])
// CHECK-NEXT:    call void @mgpuStreamDestroy(ptr %[[S]])
// CHECK-NEXT:    ret void
// CHECK-NEXT:  }

// CHECK-LABEL: define void @moec_decode(
// CHECK:         %[[S:[0-9]+]] = call ptr @mgpuStreamCreate()
// CHECK-NOT:     @mgpuStream{{Create|Destroy}}
// CHECK:         call void @mgpuStreamSynchronize(ptr %[[S]])
// CHECK-NEXT:    call void @mgpuStreamDestroy(ptr %[[S]])
// CHECK-NEXT:    ret void
// CHECK-NEXT:  }
