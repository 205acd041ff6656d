// --inspect reads only config.json and the safetensors headers.
// REQUIRES: mixtral-compile
// RUN: mixtral-compile --inspect %S/../goldens/mixtral_e4k2_bf16 --max-seq-len 128 | FileCheck %s
// RUN: not mixtral-compile --inspect 2>&1 | FileCheck %s --check-prefix=NODIR

// CHECK: config:      3 layers, hidden 64, intermediate 96, heads 4/2 (head_dim 16), 4 experts top-2, vocab 512
// CHECK: sliding_window none
// 3 * (64*64*2 + 64*32*2 + 4*3*64*96 + 4*64 + 2*64) + 2*512*64 + 64 = 324800
// CHECK: parameters:  324.80 K total
// CHECK: on disk:     649.60 KB in 1 file(s), 60 tensors (BF16 649.60 KB)
// 3 layers * 2 * 128 positions * 2 heads * 16 * 4 bytes = 98304
// CHECK: memory:      {{.*}} weights (bf16) + 98.30 KB KV cache (f32, 128 positions)
// NODIR: error: --inspect needs MODEL_DIR

// A sharded checkpoint: the index's weight_map names the files.
// RUN: %moec_python %S/../reference/make_checkpoint.py %t.sharded --vocab 64 --hidden 32 --intermediate 48 --layers 2 --heads 4 --kv-heads 2 --experts 3 --top-k 2 --dtype f16 --shards 3 > /dev/null
// RUN: mixtral-compile --inspect %t.sharded | FileCheck %s --check-prefix=SHARDED
// SHARDED: on disk: {{.*}} in 3 file(s), {{[0-9]+}} tensors (F16
