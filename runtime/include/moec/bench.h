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
// The bandwidth probe is a multi-threaded (OpenMP) sum over a buffer: one untimed pass, then
// timed passes; the figure is their median (one lucky or unlucky pass cannot move it), shown
// with its range and the share of the processors the probe's threads got (a busy machine shows
// as a low share, not as a silently low figure). --bench probes the memory a decode step reads:
// the model's own weights, once the run is over (same pages, same page size, same placement in
// the host's memory), unless they would fit in the caches; then a separate buffer.
#pragma once

#include "moec/arena.h"
#include "moec/manifest.h"

#include <cstdint>
#include <string>

namespace moec {

/// Weight elements one decoded token reads (see above).
double active_params_per_token(const ModelConfig &c);

/// active_params_per_token(c) x bytes per element of c.weight_dtype.
double weight_bytes_per_token(const ModelConfig &c);

/// The bytes one decoded token reads from the arena `m` describes, tensor by tensor: each
/// tensor's bytes (quantized ones: data + scales), k/E of the stacked expert tensors, one
/// embedding row (the whole table when tied, as the lm_head). Equals
/// weight_bytes_per_token(m.config) for an unquantized arena; the --bench roofline's bytes.
double weight_bytes_per_token(const Manifest &m);

/// Which rows a prefill's last layer runs its sparse FFN for: every row (a model that computes
/// every position's logits), or the last one only (what moec's prefills run: moec_prefill,
/// and moec_step asked for the last row's logits, peel the last layer and run its FFN for the
/// rows whose logits leave the function; the other rows' FFN outputs would never be read).
enum class PrefillFfn { AllRows, LastRowInLastLayer };

/// FLOPs of a prefill of `tokens` tokens at position 0 (see above) that runs the last
/// layer's FFN for `last_layer`'s rows.
double prefill_flops(const ModelConfig &c, std::int64_t tokens,
                     PrefillFfn last_layer = PrefillFfn::AllRows);

/// One bandwidth probe: GB/s (1e9 bytes/s) of its timed passes, and the processors it got.
struct BandwidthProbe {
  double median_gbs = 0, min_gbs = 0, max_gbs = 0;
  int passes = 0;
  double cpu_share = 0; // CPU time of the process / (threads x wall time) over the timed passes
};

/// Reads [data, data + bytes) with all OpenMP threads: one untimed pass, then `passes` timed.
BandwidthProbe measure_read_bandwidth(const void *data, std::uint64_t bytes, int passes = 5);

/// The same over a fresh `bytes` buffer (written first, so its pages are real, not the zero
/// page); returns the median.
double measure_read_bandwidth_gbs(std::uint64_t bytes, int passes = 5);

/// The largest cache one core can use, in bytes (sysfs, else sysconf; 32 MiB when neither says).
std::uint64_t last_level_cache_bytes();

/// --bench's roofline: the bandwidth of the memory decode reads, and how it was measured (a
/// line for the report, ending in '\n'). Backend::measure_bandwidth makes it.
struct BandwidthReport {
  double gbs = 0;
  std::string line;
};

/// The CPU backend's roofline: the best of 7 read passes over the `weights` arena itself as
/// it is mapped (its share on 2 MiB pages in the line), or over a fresh `buffer_bytes`
/// buffer when the weights would fit in the caches; the line also gives that fresh buffer's
/// best, for comparison only.
BandwidthReport probe_host_bandwidth(const Arena &weights, std::uint64_t buffer_bytes);

} // namespace moec
