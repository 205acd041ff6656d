// The int8-activation kernels pick their dot-product instruction from the compile's --cpu:
// vpdpbusd where the CPU has AVX512-VNNI (sapphirerapids) or AVX-VNNI (alderlake, no
// AVX-512), vpmaddubsw + vpmaddwd on AVX2 alone (haswell); the float path never uses either.
// The LLVM dialect names the intrinsic; llc's assembly for that CPU shows the instruction.
// Numerics on vpdpbusd: cpu-quant-kernels-vnni-numeric.mlir (hosts with VNNI).
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline="cpu=sapphirerapids int8-activations=true" -o %t.spr.mlir
// RUN: FileCheck %s --check-prefix=IR --implicit-check-not=pmadd.ub.sw < %t.spr.mlir
// RUN: mlir-translate --mlir-to-llvmir %t.spr.mlir | llc -O2 -mcpu=sapphirerapids -o - | FileCheck %s --check-prefix=VNNI --implicit-check-not=vpmaddubsw
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline="cpu=alderlake int8-activations=true" | mlir-translate --mlir-to-llvmir | llc -O2 -mcpu=alderlake -o - | FileCheck %s --check-prefix=AVXVNNI --implicit-check-not=vpmaddubsw
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline="cpu=haswell int8-activations=true" | mlir-translate --mlir-to-llvmir | llc -O2 -mcpu=haswell -o - | FileCheck %s --check-prefix=AVX2 --implicit-check-not=vpdpbusd
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline="cpu=sapphirerapids int8-activations=false" | mlir-translate --mlir-to-llvmir | llc -O2 -mcpu=sapphirerapids -o - | FileCheck %s --check-prefix=FLOAT --implicit-check-not=vpdpbusd --implicit-check-not=vpmaddubsw

// IR-LABEL: llvm.func @linear_q8
// IR: llvm.call_intrinsic "llvm.x86.avx2.psign.b"
// IR: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"({{.*}}) : (vector<8xi32>, vector<32xi8>, vector<32xi8>) -> vector<8xi32>
// IR-LABEL: llvm.func @linear_q4
// IR: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"

// VNNI: vpdpbusd {{.*}}%ymm
// AVXVNNI: {vex} vpdpbusd {{.*}}%ymm
// AVX2: vpmaddubsw
// AVX2: vpmaddwd
// FLOAT: vfmadd{{.*}}ps
