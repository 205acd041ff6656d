// moe-opt with the named pipeline reproduces exactly what mixtral-compile does: the model IR
// from --emit=mlir, run through --moe-cpu-pipeline and translated, equals --emit=llvm (up to
// the module's name).
// REQUIRES: mixtral-compile
// RUN: mixtral-compile %S/../goldens/mixtral_e5k3_mha_swa8_bf16 --emit=mlir --max-seq-len 32 -o %t.mlir
// RUN: moe-opt %t.mlir --moe-cpu-pipeline | mlir-translate --mlir-to-llvmir | grep -v -e '^; ModuleID' -e '^source_filename' > %t.opt.ll
// RUN: mixtral-compile %S/../goldens/mixtral_e5k3_mha_swa8_bf16 --emit=llvm --max-seq-len 32 -o - | grep -v -e '^; ModuleID' -e '^source_filename' > %t.compile.ll
// RUN: diff %t.opt.ll %t.compile.ll
// RUN: FileCheck %s < %t.compile.ll
// The same for the nvptx target: --moe-gpu-pipeline (the shared middle end, then the GPU
// lowering) gives mixtral-compile --target nvptx's host code and embedded PTX.
// RUN: mixtral-compile %S/../goldens/mixtral_e5k3_mha_swa8_bf16 --target nvptx --gpu sm_80 --emit=mlir --max-seq-len 32 -o %t.gpu.mlir
// RUN: moe-opt %t.gpu.mlir --moe-gpu-pipeline=chip=sm_80 | mlir-translate --mlir-to-llvmir | grep -v -e '^; ModuleID' -e '^source_filename' > %t.gpu.opt.ll
// RUN: mixtral-compile %S/../goldens/mixtral_e5k3_mha_swa8_bf16 --target nvptx --gpu sm_80 --emit=llvm --max-seq-len 32 -o - | grep -v -e '^; ModuleID' -e '^source_filename' > %t.gpu.compile.ll
// RUN: diff %t.gpu.opt.ll %t.gpu.compile.ll
// RUN: FileCheck %s --check-prefix=GPU < %t.gpu.compile.ll

// The ABI's entry points, bare pointers and i64 sizes (runtime/include/moec/abi.h).
// CHECK-DAG: define void @moec_prefill(ptr %{{.*}}, ptr %{{.*}}, ptr %{{.*}}, i64 %{{.*}}, i64 %{{.*}}, ptr %{{.*}})
// CHECK-DAG: define void @moec_decode(ptr %{{.*}}, ptr %{{.*}}, ptr %{{.*}}, i64 %{{.*}}, ptr %{{.*}})
// CHECK-DAG: @moec_manifest = constant
// CHECK-DAG: call void {{.*}}@__kmpc_fork_call

// GPU-DAG: define void @moec_prefill(ptr %{{.*}}, ptr %{{.*}}, ptr %{{.*}}, i64 %{{.*}}, i64 %{{.*}}, ptr %{{.*}})
// GPU-DAG: define void @moec_decode(ptr %{{.*}}, ptr %{{.*}}, ptr %{{.*}}, i64 %{{.*}}, ptr %{{.*}})
// GPU-DAG: call void @mgpuLaunchKernel(
// GPU-DAG: .target sm_80
