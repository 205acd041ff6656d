// Flags that name a target are checked before any work (LLVM would crash on an unknown --cpu
// or --gpu deep in code generation), and a flag that does not apply is refused, not ignored.
// REQUIRES: mixtral-compile
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --target nvptx --gpu sm_75 -o %t 2>&1 | FileCheck %s --check-prefix=SM75
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --target nvptx --gpu volta -o %t 2>&1 | FileCheck %s --check-prefix=VOLTA
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --gpu sm_90 -o %t 2>&1 | FileCheck %s --check-prefix=GPUCPU
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --target nvptx --cpu znver4 -o %t 2>&1 | FileCheck %s --check-prefix=CPUGPU
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --cpu foo -o %t 2>&1 | FileCheck %s --check-prefix=CPU
// RUN: mixtral-compile --cpu help | FileCheck %s --check-prefix=HELP
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --max-seq-len 0 -o %t 2>&1 | FileCheck %s --check-prefix=SEQ0
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --max-seq-len -3 -o %t 2>&1 | FileCheck %s --check-prefix=SEQNEG
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --quantize q3 -o %t 2>&1 | FileCheck %s --check-prefix=QUANT
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --quantize f8e4m3 -o %t 2>&1 | FileCheck %s --check-prefix=QUANTF8
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --quantize q4 --int8-activations --target nvptx -o %t 2>&1 | FileCheck %s --check-prefix=INT8GPU
// RUN: not ls %t %t.weights

// QUANT: mixtral-compile: error: --quantize must be q8 or q4, not 'q3'
// QUANTF8: mixtral-compile: error: --quantize must be q8 or q4, not 'f8e4m3'
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --int8-activations -o %t 2>&1 | FileCheck %s --check-prefix=INT8
// INT8: mixtral-compile: error: --int8-activations needs --quantize q8 or q4 (it rounds the activations that meet integer weights)
// INT8GPU: mixtral-compile: error: --int8-activations is for --target cpu: the GPU kernels dequantise q8/q4 weights in registers and keep the activations in f32 (bf16 in the tensor-core tiles)

// SM75: mixtral-compile: error: --gpu sm_75 is not supported: the kernels need sm_80 or newer; one of sm_80, sm_86, sm_87, sm_88, sm_89, sm_90, sm_90a, sm_100,
// VOLTA: mixtral-compile: error: --gpu volta is not supported: the kernels need sm_80 or newer; one of sm_80,
// GPUCPU: mixtral-compile: error: --gpu applies to --target nvptx only; add --target nvptx or drop --gpu
// CPUGPU: mixtral-compile: error: --cpu applies to --target cpu only (a GPU binary's host code is built for x86-64-v2)
// CPU: mixtral-compile: error: --cpu foo is not a CPU LLVM's x86-64 backend knows (e.g. x86-64-v3, skylake-avx512, znver4; --cpu help lists them; default: host)
// HELP-DAG: {{^}}x86-64-v3{{$}}
// HELP-DAG: {{^}}znver4{{$}}
// SEQ0: mixtral-compile: error: --max-seq-len must be at least 1, got 0 (leave it out for min(max_position_embeddings, 4096))
// SEQNEG: mixtral-compile: error: --max-seq-len must be at least 1, got -3 (leave it out for min(max_position_embeddings, 4096))
