// The whole forward pass of the built-in model, of a Hugging Face golden and of a
// Mixtral-shaped layer compiles to PTX that ptxas accepts for sm_80 and sm_90, with
// tensor-core GEMMs and no register spills.
// REQUIRES: mixtral-compile, ptxas

// RUN: rm -rf %t.tiny80.ptx.model %t.tiny90.ptx.model
// RUN: mixtral-compile --tiny -o %t.tiny80.ptx --target nvptx --gpu sm_80 --emit=ptx
// RUN: FileCheck %s --check-prefix=PTX < %t.tiny80.ptx
// RUN: FileCheck %s --check-prefix=SMEM < %t.tiny80.ptx
// RUN: %ptxas -arch=sm_80 -v %t.tiny80.ptx -o %t.tiny80.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS
// RUN: mixtral-compile --tiny -o %t.tiny90.ptx --target nvptx --gpu sm_90 --emit=ptx
// RUN: %ptxas -arch=sm_90 -v %t.tiny90.ptx -o %t.tiny90.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS

// RUN: mixtral-compile %S/../../goldens/mixtral_e3k1_gqa4_swa8_f32 -o %t.golden.ptx --target nvptx --gpu sm_80 --emit=ptx
// RUN: %ptxas -arch=sm_80 -v %t.golden.ptx -o %t.golden.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS
// RUN: mixtral-compile %S/../../goldens/mixtral_e5k3_mha_swa8_bf16 -o %t.golden2.ptx --target nvptx --gpu sm_90 --emit=ptx
// RUN: %ptxas -arch=sm_90 -v %t.golden2.ptx -o %t.golden2.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS

// Quantized weights: the _q8 / _q4 kernel variants (dequantising in registers) as well.
// RUN: mixtral-compile %S/../../goldens/mixtral_e4k2_f32 --quantize q8 -o %t.q8.ptx --target nvptx --gpu sm_80 --emit=ptx
// RUN: FileCheck %s --check-prefix=Q8 < %t.q8.ptx
// RUN: %ptxas -arch=sm_80 -v %t.q8.ptx -o %t.q8.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS
// RUN: mixtral-compile %S/../../goldens/mixtral_e4k2_f32 --quantize q4 -o %t.q4.ptx --target nvptx --gpu sm_90 --emit=ptx
// RUN: FileCheck %s --check-prefix=Q4 < %t.q4.ptx
// RUN: %ptxas -arch=sm_90 -v %t.q4.ptx -o %t.q4.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS

// RUN: rm -rf %t.mixtral && python3 %S/Inputs/mixtral_header_only.py %t.mixtral --layers 1
// RUN: mixtral-compile %t.mixtral -o %t.mixtral.ptx --target nvptx --gpu sm_90 --emit=ptx --max-seq-len 4096
// RUN: FileCheck %s --check-prefix=PTX < %t.mixtral.ptx
// RUN: %ptxas -arch=sm_90 -v %t.mixtral.ptx -o %t.mixtral90.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS
// RUN: mixtral-compile %t.mixtral -o %t.mixtral80.ptx --target nvptx --gpu sm_80 --emit=ptx --max-seq-len 4096
// RUN: %ptxas -arch=sm_80 -v %t.mixtral80.ptx -o %t.mixtral80.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS

// sm_90a: the warpgroup GEMMs (wgmma.mma_async from shared-memory descriptors) beside
// mma.sync, float and quantized; ptxas -v shows their registers, no spills.
// RUN: mixtral-compile --tiny -o %t.tiny90a.ptx --target nvptx --gpu sm_90a --emit=ptx
// RUN: FileCheck %s --check-prefix=WGMMA < %t.tiny90a.ptx
// RUN: %ptxas -arch=sm_90a -v %t.tiny90a.ptx -o %t.tiny90a.cubin > %t.tiny90a.log 2>&1
// RUN: FileCheck %s --check-prefix=PTXAS < %t.tiny90a.log
// RUN: FileCheck %s --check-prefix=PTXAS-WG < %t.tiny90a.log
// RUN: mixtral-compile %S/../../goldens/mixtral_e4k2_f32 --quantize q4 -o %t.q4a.ptx --target nvptx --gpu sm_90a --emit=ptx
// RUN: FileCheck %s --check-prefix=Q4A < %t.q4a.ptx
// RUN: %ptxas -arch=sm_90a -v %t.q4a.ptx -o %t.q4a.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS
// RUN: mixtral-compile %t.mixtral -o %t.mixtral90a.ptx --target nvptx --gpu sm_90a --emit=ptx --max-seq-len 4096
// RUN: %ptxas -arch=sm_90a -v %t.mixtral90a.ptx -o %t.mixtral90a.cubin > %t.mixtral90a.log 2>&1
// RUN: FileCheck %s --check-prefix=PTXAS < %t.mixtral90a.log
// RUN: FileCheck %s --check-prefix=PTXAS-WG < %t.mixtral90a.log

// WGMMA: .target sm_90a
// WGMMA-LABEL: .entry gemm_wgmma(
// (The loop is rotated: the wait may come before the mma_async in the text.)
// WGMMA-DAG: cp.async.cg.shared.global
// WGMMA-DAG: fence.proxy.async.shared::cta
// WGMMA-DAG: wgmma.fence.sync.aligned
// WGMMA-DAG: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// WGMMA-DAG: wgmma.commit_group.sync.aligned
// WGMMA-DAG: wgmma.wait_group.sync.aligned {{[[:space:]]*}}0;
// WGMMA-LABEL: .entry gemm_wgmma_swiglu(
// WGMMA: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// WGMMA: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// Q4A-DAG: .entry gemm_wgmma_q4(
// Q4A-DAG: .entry gemm_wgmma_swiglu_q4(
// Q4A-DAG: .entry gemm_mma_q4(
// PTXAS-WG-NOT: serialized
// PTXAS-WG: Compiling entry function 'gemm_wgmma_swiglu'
// PTXAS-WG-NOT: {{[1-9][0-9]*}} bytes spill stores
// PTXAS-WG-NOT: serialized

// PTX: .target sm_
// PTX-LABEL: .entry gemm_mma(
// PTX: ldmatrix.sync.aligned.m8n8.x4.shared.b16
// PTX: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// PTX-LABEL: .entry gemm_mma_swiglu(
// PTX: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// PTX-LABEL: .entry attention(

// Q8-DAG: .entry gemv_q8(
// Q8-DAG: .entry gemv_swiglu_q8(
// Q8-DAG: .entry gemm_mma_q8(
// Q8-DAG: .entry gemm_mma_swiglu_q8(
// Q4-DAG: .entry gemv_q4(
// Q4-DAG: .entry gemv_swiglu_q4(
// Q4-DAG: .entry gemm_mma_q4(
// Q4-DAG: .entry gemm_mma_swiglu_q4(

// Shared buffers are 16-byte aligned (ldmatrix rows, vectorized ld.shared.v4).
// SMEM-NOT: .shared .align {{[1248]}} .b8
// SMEM: .shared .align 16 .b8 __wg_gemm_mma_0
// SMEM-NOT: .shared .align {{[1248]}} .b8

// PTXAS-NOT: {{error|fatal}}
// PTXAS-NOT: {{[1-9][0-9]*}} bytes spill stores
// PTXAS: Compiling entry function 'gemm_mma_swiglu'
// PTXAS-NOT: {{[1-9][0-9]*}} bytes spill stores
// PTXAS-NOT: {{error|fatal}}
