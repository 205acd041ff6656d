// A prompt prefilled in chunks (each call at the position the previous one ended, attention
// reaching back into the cache, sliding window 8) gives exactly the logits of one call.
// REQUIRES: mixtral-compile
// RUN: mixtral-compile %S/../goldens/mixtral_e3k1_gqa4_swa8_f32 --max-seq-len 64 -o %t.out
// RUN: %t.out -q --prompt-ids 1,5,9,13,17,21,25,29,33,37,41,45,49,53,57,61,65,69,73,77,81,85,89,93,97,101,105,109,113,117,121,125,129,133,137,141,145,149,153,157 -n 0 --logits-out %t.whole
// RUN: %t.out -q --prompt-ids 1,5,9,13,17,21,25,29,33,37,41,45,49,53,57,61,65,69,73,77,81,85,89,93,97,101,105,109,113,117,121,125,129,133,137,141,145,149,153,157 -n 0 --logits-out %t.chunked --prefill-chunk 3
// RUN: cmp %t.whole %t.chunked
// RUN: not %t.out -q --prompt-ids 1,5,9 -n 0 --prefill-chunk 0 2>&1 | FileCheck %s
// CHECK: error: --prefill-chunk: must be
