// --inspect reads only config.json and the safetensors headers.
// REQUIRES: mixtral-compile
// RUN: mixtral-compile --inspect %S/../goldens/mixtral_e4k2_bf16 --max-seq-len 128 | FileCheck %s
// RUN: not mixtral-compile --inspect 2>&1 | FileCheck %s --check-prefix=NODIR
// For nvptx the activations line names what the GPU kernels take (no int8 activations there).
// RUN: mixtral-compile --inspect %S/../goldens/mixtral_e4k2_bf16 --target nvptx | FileCheck %s --check-prefix=GPU
// GPU: --quantize q4 {{.*}} (experts and attention 4.50 bits/weight, the rest bf16; f32 activations (bf16 in the tensor-core tiles))
// GPU-NOT: int8
// The quantized model's IR names its packed file (with a placeholder fingerprint: stages
// before the executable write none) and its q8 tensors with their scale arrays.
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_bf16 --quantize q8 --emit=mlir -o - | FileCheck %s --check-prefix=MANIFEST
// MANIFEST: \22dtype\22:\22q8\22,\22shape\22:[4,96,64],\22offset\22:{{[0-9]+}},\22group_size\22:32,\22scale\22:{\22dtype\22:\22f16\22
// MANIFEST-SAME: \22weights_file\22:{\22name\22:\22-.weights\22,\22fingerprint\22:\2200000000000000000000000000000000\22

// CHECK: config:      3 layers, hidden 64, intermediate 96, heads 4/2 (head_dim 16), 4 experts top-2, vocab 512
// CHECK: sliding_window none
// 3 * (64*64*2 + 64*32*2 + 4*3*64*96 + 4*64 + 2*64) + 2*512*64 + 64 = 324800
// CHECK: parameters:  324.80 K total
// CHECK: on disk:     649.60 KB in 1 file(s), 60 tensors (BF16 649.60 KB)
// 3 layers * 2 * 128 positions * 2 heads * 16 * 4 bytes = 98304
// CHECK: memory:      {{.*}} weights (bf16) + 98.30 KB KV cache (f32, 128 positions)
// 3 * (4*3*64*96 + 2*64*64 + 2*32*64) = 270336 weights quantized; 512*64*2 embed + lm_head +
// norms and router in bf16. q8: 8 + 16/32 bits per quantized weight.
// CHECK:      weights as:
// CHECK-NEXT:   bf16 (as on disk) {{.*}} 16.{{[0-9]+}} bits/parameter (bf16 throughout)
// CHECK-NEXT:   --quantize q8 {{.*}} (experts and attention 8.50 bits/weight, the rest bf16; f32 activations, --int8-activations: int8)
// CHECK-NEXT:   --quantize q4 {{.*}} (experts and attention 4.50 bits/weight, the rest bf16; int8 activations, =false: f32)
// NODIR: error: --inspect needs MODEL_DIR

// A sharded checkpoint: the index's weight_map names the files.
// RUN: %moec_python %S/../reference/make_checkpoint.py %t.sharded --vocab 64 --hidden 32 --intermediate 48 --layers 2 --heads 4 --kv-heads 2 --experts 3 --top-k 2 --dtype f16 --shards 3 > /dev/null
// RUN: mixtral-compile --inspect %t.sharded | FileCheck %s --check-prefix=SHARDED
// SHARDED: on disk: {{.*}} in 3 file(s), {{[0-9]+}} tensors (F16
// w2's K = 48 (intermediate 48) is no multiple of 32: the experts are one sparse block with
// one format, so w1/w3 (K = 32) stay f16 with it; the attention projections are quantized.
// SHARDED: --quantize q8 {{.*}} (quantized tensors 8.50 bits/weight, the rest f16; f32 activations, --int8-activations: int8)
// SHARDED-NEXT: (a K not a multiple of 32; the experts go together; kept f16: moe.w1, moe.w3, moe.w2 of every layer)
