// The built-in model compiled for nvptx, run here by the PTX interpreter (test/gpu-emu) in
// place of libcuda.so.1: its greedy ids equal the CPU binary's, and a GPU without room for the
// weights and KV cache is a one-line error before anything is loaded.
// REQUIRES: mixtral-compile, ptxemu
// RUN: rm -rf %t && mkdir -p %t
// RUN: mixtral-compile --tiny -o %t/cpu
// RUN: mixtral-compile --tiny --target nvptx --gpu sm_80 -o %t/gpu
// RUN: %t/cpu --prompt-ids 1,415,2936 -n 4 --temperature 0 --print-ids > %t/cpu.ids
// RUN: env MOEC_CUDA_DRIVER=%ptxemu %t/gpu --prompt-ids 1,415,2936 -n 4 --temperature 0 --print-ids > %t/gpu.ids
// RUN: diff %t/cpu.ids %t/gpu.ids
// RUN: FileCheck %s --check-prefix=IDS < %t/gpu.ids
// RUN: env MOEC_CUDA_DRIVER=%ptxemu PTXEMU_MEMORY_MIB=10 not %t/gpu --prompt-ids 1,415,2936 -n 4 2>&1 | FileCheck %s --check-prefix=OOM

// IDS: {{^[0-9]+ [0-9]+ [0-9]+ [0-9]+$}}
// OOM: error: not enough GPU memory: the model needs {{.*}} (weights {{.*}} + KV cache {{.*}}) but ptxemu (PTX interpreter) has 10.00 MiB free
