// moec/metrics.h — the server's counters and histograms, rendered as Prometheus text.
//
// Written by the scheduler thread (steps, tokens, time to first token, inter-token gaps) and the
// HTTP handlers (requests by status); read by GET /metrics. One mutex: a few updates per step.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace moec {

/// A Prometheus histogram: cumulative counts of observations <= each upper bound.
struct Histogram {
  std::vector<double> bounds;        // ascending upper bounds; +Inf is implicit
  std::vector<std::uint64_t> counts; // [bounds.size() + 1], not cumulative
  double sum = 0;
  std::uint64_t count = 0;

  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  /// Appends the _bucket/_sum/_count lines of metric `name`.
  void render(std::string &out, const std::string &name) const;
};

/// Gauges sampled when /metrics is read.
struct MetricsGauges {
  std::int64_t running = 0, waiting = 0, kv_blocks_used = 0, kv_blocks_cached = 0,
               kv_blocks_total = 0;
};

class Metrics {
public:
  Metrics();

  void on_request(int http_status);           // a finished HTTP request to /v1/*
  void on_prompt(std::int64_t tokens);        // a request admitted with this many prompt tokens
  void on_step(std::int64_t rows, std::int64_t sequences);
  void on_first_token(double seconds);        // submit -> first token
  void on_next_token(double seconds);         // gap between a request's tokens
  void on_preemption();
  /// An admitted request found `blocks` blocks (`tokens` tokens) of its prefix computed, of
  /// which `revived` were cached (no running request held them).
  void on_prefix_reuse(std::int64_t blocks, std::int64_t tokens, std::int64_t revived);
  void on_eviction(std::int64_t blocks); // cached blocks reclaimed for new positions

  std::string render(const MetricsGauges &gauges) const;

private:
  mutable std::mutex mutex_;
  std::map<int, std::uint64_t> requests_; // HTTP status -> count
  std::uint64_t prompt_tokens_ = 0, generation_tokens_ = 0, steps_ = 0, preemptions_ = 0,
                prefix_blocks_ = 0, prefix_tokens_ = 0, prefix_revived_ = 0, evicted_ = 0;
  Histogram ttft_, itl_, batch_rows_, batch_sequences_;
};

} // namespace moec
