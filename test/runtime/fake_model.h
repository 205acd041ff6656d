// fake_model.h — TEST DOUBLE for the generated object (moec_manifest / moec_prefill /
// moec_decode). Linked into moec_runtime_tests only, never into a real binary.
//
// The fake model puts all probability mass on (last token + 1) % V — or, while its script is
// not empty, on the script's next id (one per call) — writes each token id into
// kv[0][0][pos][0][0], and checks on every call that earlier positions hold the ids it wrote.
// fake_entry_points(vocab) serves the same model under a larger vocab_size (e.g. 32000, so the
// real Mixtral tokenizer fits it).
#pragma once

#include "moec/run.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moec::test {

/// The fake's dimensions: V=16, D=4, F=8, L=1, H=2, KVH=1, HD=2, E=2, S=32; f32 weights.
constexpr std::int64_t kFakeVocab = 16;
constexpr std::int64_t kFakeSeqLen = 32;

struct FakeModelLog {
  int prefill_calls = 0;
  int decode_calls = 0;
  std::vector<std::int64_t> positions; // pos argument of every call, in order
  std::vector<std::int64_t> counts;    // n_tokens of every call (1 for decode), in order
  std::vector<std::int32_t> sequence;  // every token id fed, in position order
  int kv_mismatches = 0;               // earlier positions not holding what was written
  float weight_probe = -1;             // weights arena byte 0 as f32 at the last call
  std::int64_t vocab = kFakeVocab;     // logits written per call
  std::vector<std::int32_t> script;    // ids to predict next, front first (consumed per call)
  int poison_call = -1;                // this call (0 = the first prefill; prefill and decode
  std::int64_t poison_token = 0;       // calls counted together) and every later one write
  float poison_value = 0;              // poison_value into logits[poison_token]
  int sigint_at_call = 0;              // raise SIGINT in this call (1 = the first prefill or
                                       // decode call), as a Ctrl-C during the compiled code
  void clear() { *this = FakeModelLog(); }
};
FakeModelLog &fake_log();

/// The fake's checkpoint: embed f32 [16, 4] = iota + 0.5, experts.{0,1}.w1 f32 [8, 4] = iota + 100*e;
/// and the config.json of the fake's manifest beside it.
void write_fake_checkpoint(const std::string &path);
/// The config.json of the fake's manifest (with vocab_size `vocab`) in `dir`.
void write_fake_config(const std::string &dir, std::int64_t vocab);

/// EntryPoints bound to the fake (the same functions the fake's extern "C" symbols use).
EntryPoints fake_entry_points();
/// The same fake with a manifest that says vocab_size = `vocab`; sets fake_log().vocab.
EntryPoints fake_entry_points(std::int64_t vocab);

/// The fake's manifest text (also exported as moec_manifest).
std::string fake_manifest_text();

} // namespace moec::test
