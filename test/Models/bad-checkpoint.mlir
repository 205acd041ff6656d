// The model that is compiled is the model the checkpoint describes, and every input is read
// with bounded work: each case is one clear line naming the file and a non-zero exit.
// REQUIRES: mixtral-compile
// RUN: rm -rf %t && mkdir -p %t
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/layer extra-layer
// RUN: not mixtral-compile %t/layer -o %t/out 2>&1 | FileCheck %s --check-prefix=LAYER
// LAYER: error: {{.*}}layer/model.safetensors: the checkpoint has layer 3 ('model.layers.3.input_layernorm.weight') but config.json's num_hidden_layers is 3

// Tensors nobody reads are refused unless --allow-unused-tensors.
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/bias bias
// RUN: not mixtral-compile %t/bias -o %t/out 2>&1 | FileCheck %s --check-prefix=UNUSED
// RUN: mixtral-compile %t/bias --allow-unused-tensors --emit=mlir -o %t/bias.mlir
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/invfreq inv-freq
// RUN: mixtral-compile %t/invfreq --emit=mlir -o %t/invfreq.mlir
// UNUSED: error: {{.*}}bias/model.safetensors: 1 tensor(s) are not read by the model of config.json, the first 'model.layers.0.self_attn.q_proj.bias'; pass --allow-unused-tensors to compile anyway

// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/gelu gelu
// RUN: not mixtral-compile %t/gelu -o %t/out 2>&1 | FileCheck %s --check-prefix=GELU
// GELU: error: {{.*}}gelu/config.json: "hidden_act" is "gelu", but only "silu" is implemented

// tie_word_embeddings with an lm_head.weight: refused unless the two are byte-identical.
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/tie tie-differs
// RUN: not mixtral-compile %t/tie -o %t/out 2>&1 | FileCheck %s --check-prefix=TIE
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/tiesame tie-same
// RUN: mixtral-compile %t/tiesame --emit=mlir -o %t/tiesame.mlir
// TIE: error: {{.*}}tie/model.safetensors: config.json sets tie_word_embeddings, but the checkpoint's lm_head.weight differs from model.embed_tokens.weight; set tie_word_embeddings to false to use lm_head.weight, or remove it

// One rule for shard names on both sides: a plain .safetensors file in the index's folder.
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/sub shard-subdir
// RUN: not mixtral-compile %t/sub -o %t/out 2>&1 | FileCheck %s --check-prefix=SUBDIR
// SUBDIR: error: {{.*}}sub/model.safetensors.index.json: weight_map entry for '{{.*}}' is 'sub/s.safetensors', which is not a plain file name (it holds a '/'); shards must be .safetensors files in the index's folder
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/nul nul-padded
// RUN: not mixtral-compile %t/nul -o %t/out 2>&1 | FileCheck %s --check-prefix=NUL
// NUL: error: {{.*}}nul/model.safetensors: header holds a NUL byte (safetensors pads headers with spaces)

// Bounded work: nesting, FIFOs, devices, sizes that overflow together.
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/deep deep-config
// RUN: not mixtral-compile %t/deep -o %t/out 2>&1 | FileCheck %s --check-prefix=DEEP
// DEEP: error: {{.*}}deep/config.json: nested deeper than 64 levels
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/fifo gelu
// RUN: rm %t/fifo/config.json && mkfifo %t/fifo/config.json
// RUN: not mixtral-compile %t/fifo -o %t/out 2>&1 | FileCheck %s --check-prefix=FIFO
// FIFO: error: {{.*}}fifo/config.json: not a regular file (it is a FIFO)
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/zero bias
// RUN: rm %t/zero/model.safetensors && ln -s /dev/zero %t/zero/model.safetensors
// RUN: not mixtral-compile %t/zero -o %t/out 2>&1 | FileCheck %s --check-prefix=ZERO
// ZERO: error: {{.*}}zero/model.safetensors: not a regular file (it is a character device)
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/dangling bias
// RUN: rm %t/dangling/model.safetensors && ln -s %t/nowhere.safetensors %t/dangling/model.safetensors
// RUN: not mixtral-compile %t/dangling -o %t/out 2>&1 | FileCheck %s --check-prefix=DANGLING
// DANGLING: error: {{.*}}dangling/model.safetensors: is a dangling symlink to '{{.*}}nowhere.safetensors'
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/layers 'config:num_hidden_layers=16777216'
// RUN: not mixtral-compile %t/layers -o %t/out 2>&1 | FileCheck %s --check-prefix=LAYERS
// LAYERS: error: {{.*}}layers/config.json: "num_hidden_layers" (16777216) is above the limit of 1024
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/experts 'config:num_local_experts=16777216'
// RUN: not mixtral-compile %t/experts -o %t/out 2>&1 | FileCheck %s --check-prefix=EXPERTS
// EXPERTS: error: {{.*}}experts/config.json: "num_local_experts" (16777216) is above the limit of 1024
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/wide 'config:hidden_size=16777216'
// RUN: not mixtral-compile %t/wide -o %t/out 2>&1 | FileCheck %s --check-prefix=WIDE
// WIDE: error: {{.*}}wide/config.json: "hidden_size" (16777216) is above the limit of 65536
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/hd 'config:head_dim=2305843009213693952'
// RUN: not mixtral-compile %t/hd -o %t/out 2>&1 | FileCheck %s --check-prefix=HEADDIM
// HEADDIM: error: {{.*}}hd/config.json: the head dimension must be positive, even (for RoPE) and at most 4096, but it is 2305843009213693952
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/theta 'config:rope_theta=1e400'
// RUN: not mixtral-compile %t/theta -o %t/out 2>&1 | FileCheck %s --check-prefix=THETA
// THETA: error: {{.*}}theta/config.json: not valid JSON (byte {{[0-9]+}}): number overflow parsing '1e400'
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/theta0 'config:rope_theta=0'
// RUN: not mixtral-compile %t/theta0 -o %t/out 2>&1 | FileCheck %s --check-prefix=THETA0
// THETA0: error: {{.*}}theta0/config.json: "rope_theta" must be a finite positive number, but it is 0
// RUN: %moec_python %S/Inputs/hostile_checkpoint.py %S/../goldens/mixtral_e4k2_f32 %t/eps 'config:rms_norm_eps=-1e-5'
// RUN: not mixtral-compile %t/eps -o %t/out 2>&1 | FileCheck %s --check-prefix=EPS
// EPS: error: {{.*}}eps/config.json: "rms_norm_eps" must be in (0, 1), but it is -1e-05
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --max-seq-len 4294967296 -o %t/out 2>&1 | FileCheck %s --check-prefix=SEQBIG
// SEQBIG: error: --max-seq-len 4294967296 exceeds the model's max_position_embeddings (256)
// RUN: cp -r %S/../goldens/mixtral_e4k2_f32 %t/$(printf 'bad\377name')
// RUN: not mixtral-compile %t/$(printf 'bad\377name') -o %t/out 2>&1 | FileCheck %s --check-prefix=UTF8
// UTF8: error: the model folder's path is not valid UTF-8; the compiled binary records it in its manifest (JSON), so rename the folder or move it to a UTF-8 path
// RUN: not test -e %t/out
