// moec/bench.h — the numbers behind --bench: a cost model of one token and a bandwidth probe.
//
// The cost model counts what the generated code must touch, from the manifest's config and
// weight dtype alone (so it is the same for every compiled binary of a model):
//   * weight bytes read per decoded token: every layer's attention (q, k, v, o), both RMSNorm
//     weights and the router; k of the E experts' w1/w3/w2 per layer; the final norm; lm_head;
//     one embedding row.
//   * prefill FLOPs for T tokens at position 0 (what moec_prefill computes): per token and
//     layer 2 x (attention projections + router + k experts x 3 matrices), plus attention
//     scores and values 2 x 2 x H x HD x ctx (ctx = positions the token attends to, capped by
//     the sliding window), plus lm_head (2 x V x D) for the last token only.
// The bandwidth probe is a multi-threaded (OpenMP) read of a buffer, best of `repeats`; --bench probes before and after the run and keeps the best.
#pragma once

#include "moec/manifest.h"

#include <cstdint>

namespace moec {

/// Weight elements one decoded token reads (see above).
double active_params_per_token(const ModelConfig &c);

/// active_params_per_token(c) x bytes per element of c.weight_dtype.
double weight_bytes_per_token(const ModelConfig &c);

/// FLOPs of a prefill of `tokens` tokens at position 0 (see above).
double prefill_flops(const ModelConfig &c, std::int64_t tokens);

/// Memory read bandwidth in GB/s (1e9 bytes/s): sum over a `bytes` buffer with all OpenMP
/// threads, best of `repeats`; --bench probes before and after the run and keeps the best.timed passes after one untimed pass that faults the pages in.
double measure_read_bandwidth_gbs(std::uint64_t bytes, int repeats = 3);

} // namespace moec
