// moec/checkpoint/config.h — a Mixtral config.json, parsed and validated once for both sides.
//
// The compiler builds the model from it; the manifest carries it into the binary; the binary
// compares the model folder's config.json with it at start-up. Every size is range-checked
// against the limits below and every product the model needs (parameter counts, bytes) is
// computed with overflow checks, so a config that is accepted can be compiled and run.
#pragma once

#include "moec/checkpoint/dtype.h"
#include "moec/checkpoint/result.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace moec::checkpoint {

/// The model hyper-parameters (Hugging Face config.json names).
struct ModelConfig {
  std::int64_t vocab_size = 0;                // V
  std::int64_t hidden_size = 0;               // D
  std::int64_t intermediate_size = 0;         // F, per expert
  std::int64_t num_hidden_layers = 0;         // L
  std::int64_t num_attention_heads = 0;       // H
  std::int64_t num_key_value_heads = 0;       // KVH, divides H
  std::int64_t head_dim = 0;                  // HD ("head_dim", else D / H), even
  std::int64_t num_local_experts = 0;         // E
  std::int64_t num_experts_per_tok = 0;       // k <= E
  double rms_norm_eps = 1e-5;                 // in (0, 1)
  double rope_theta = 1e6;                    // finite, > 0
  std::int64_t max_position_embeddings = 0;   // trained context
  std::optional<std::int64_t> sliding_window; // null, absent or 0 in the JSON = none
  bool tie_word_embeddings = false;           // lm_head is the embedding
  std::string hidden_act = "silu";            // the only activation implemented
  std::int32_t bos_token_id = 1;              // in [0, V)
  std::int32_t eos_token_id = 2;              // in [0, V)
  DType weight_dtype = DType::BF16;           // f32 | bf16 | f16 (the manifest's; not in config.json)

  std::int64_t q_dim() const { return num_attention_heads * head_dim; }   // H * HD
  std::int64_t kv_dim() const { return num_key_value_heads * head_dim; } // KVH * HD
};

/// Limits a config must keep (refused before any work; Mixtral 8x22B is well inside).
struct ConfigLimits {
  static constexpr std::int64_t kMaxVocab = std::int64_t(1) << 24;
  static constexpr std::int64_t kMaxHidden = std::int64_t(1) << 16;
  static constexpr std::int64_t kMaxIntermediate = std::int64_t(1) << 18;
  static constexpr std::int64_t kMaxLayers = 1024;
  static constexpr std::int64_t kMaxHeads = 1024;
  static constexpr std::int64_t kMaxHeadDim = 4096;
  static constexpr std::int64_t kMaxExperts = 1024;
  static constexpr std::int64_t kMaxPositions = std::int64_t(1) << 24;
  /// All weights together (2^42 = 4.4 T parameters).
  static constexpr std::int64_t kMaxParameters = std::int64_t(1) << 42;
};

/// Parses and validates config.json text; `name` names the file in messages
/// ("<name>: \"rms_norm_eps\" must be in (0, 1), but it is -1e-05").
Result<ModelConfig> parse_config(std::string_view text, const std::string &name);
/// read_small_file + parse_config.
Result<ModelConfig> load_config(const std::string &path);
/// Range and consistency checks (parse_config runs them; the manifest reader too).
Status validate_config(const ModelConfig &c);

/// The config.json a Hugging Face checkpoint of this model carries.
std::string write_config_json(const ModelConfig &c);

/// Parameter counts of a validated config: all weights, and those one token reads (shared
/// weights, k experts per layer, and lm_head; the embedding is one row per token unless tied).
std::int64_t total_parameters(const ModelConfig &c);
std::int64_t active_parameters(const ModelConfig &c);

/// "" when every field that changes the numbers agrees, else "<field> is <file's> but this
/// binary was compiled for <compiled's>". max_position_embeddings is not compared: without
/// RoPE scaling it changes nothing (the compiled context is max_seq_len).
std::string config_mismatch(const ModelConfig &file, const ModelConfig &compiled);

/// A double as a person wrote it ("-1e-05", "1000000").
std::string format_number(double v);

} // namespace moec::checkpoint
