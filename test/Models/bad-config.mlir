// A malformed or inconsistent config.json is one clear line naming the file and the field,
// and a non-zero exit.
// REQUIRES: mixtral-compile
// RUN: not mixtral-compile %S/Inputs/bad-configs/not-json -o %t 2>&1 | FileCheck %s --check-prefix=NOTJSON
// RUN: not mixtral-compile %S/Inputs/bad-configs/missing-field -o %t 2>&1 | FileCheck %s --check-prefix=MISSING
// RUN: not mixtral-compile %S/Inputs/bad-configs/zero-heads -o %t 2>&1 | FileCheck %s --check-prefix=ZERO
// RUN: not mixtral-compile %S/Inputs/bad-configs/not-divisible -o %t 2>&1 | FileCheck %s --check-prefix=DIV
// RUN: not mixtral-compile %S/Inputs/bad-configs/k-too-big -o %t 2>&1 | FileCheck %s --check-prefix=TOPK
// RUN: not mixtral-compile %S/Inputs/bad-configs/negative-size -o %t 2>&1 | FileCheck %s --check-prefix=NEG
// RUN: not mixtral-compile %S/Inputs/bad-configs/wrong-type -o %t 2>&1 | FileCheck %s --check-prefix=TYPE
// RUN: not mixtral-compile %S/Inputs/bad-configs/wrong-arch -o %t 2>&1 | FileCheck %s --check-prefix=ARCH
// RUN: not mixtral-compile %S/Inputs/bad-configs/gqa-mismatch -o %t 2>&1 | FileCheck %s --check-prefix=GQA
// RUN: not mixtral-compile %S/Inputs/no-such-dir -o %t 2>&1 | FileCheck %s --check-prefix=NODIR
// RUN: not mixtral-compile %S/Inputs/bad-configs/zero-heads 2>&1 | FileCheck %s --check-prefix=NOOUT
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --max-seq-len 100000 -o %t 2>&1 | FileCheck %s --check-prefix=SEQ
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --bogus-flag -o %t 2>&1 | FileCheck %s --check-prefix=FLAG
// RUN: not test -e %t

// NOTJSON: error: {{.*}}not-json/config.json: not valid JSON
// MISSING: error: {{.*}}missing-field/config.json: missing field "num_local_experts"
// ZERO: error: {{.*}}zero-heads/config.json: "num_attention_heads" must be positive, but it is 0
// DIV: error: {{.*}}not-divisible/config.json: "hidden_size" (30) must be divisible by "num_attention_heads" (4)
// TOPK: error: {{.*}}: "num_experts_per_tok" (5) must not exceed "num_local_experts" (4)
// NEG: error: {{.*}}: "intermediate_size" must be positive, but it is -48
// TYPE: error: {{.*}}: field "num_hidden_layers" must be an integer
// ARCH: error: {{.*}}: "architectures" must be ["MixtralForCausalLM"]
// GQA: error: {{.*}}: "num_attention_heads" (4) must be a multiple of "num_key_value_heads" (3)
// NODIR: error: {{.*}}no-such-dir: model folder does not exist
// NOOUT: error: no output file: pass -o OUT
// SEQ: error: --max-seq-len 100000 exceeds the model's max_position_embeddings (256)
// FLAG: Unknown command line argument '--bogus-flag'
