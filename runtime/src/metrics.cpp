// metrics.cpp — Metrics and Histogram (see moec/metrics.h).
#include "moec/metrics.h"

#include <cstdio>

namespace moec {
namespace {

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void line(std::string &out, const std::string &name, const char *type, const char *help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

} // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds(std::move(upper_bounds)), counts(bounds.size() + 1, 0) {}

void Histogram::observe(double value) {
  std::size_t i = 0;
  while (i < bounds.size() && value > bounds[i])
    ++i;
  ++counts[i];
  sum += value;
  ++count;
}

void Histogram::render(std::string &out, const std::string &name) const {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    cumulative += counts[i];
    out += name + "_bucket{le=\"" + number(bounds[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count) + "\n";
  out += name + "_sum " + number(sum) + "\n" + name + "_count " + std::to_string(count) + "\n";
}

Metrics::Metrics()
    : ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      itl_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      batch_rows_({1, 2, 4, 8, 16, 32, 64, 128, 256, 512}),
      batch_sequences_({1, 2, 4, 8, 16, 32, 64}) {}

void Metrics::on_request(int http_status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[http_status];
}
void Metrics::on_prompt(std::int64_t tokens) {
  std::lock_guard<std::mutex> lock(mutex_);
  prompt_tokens_ += static_cast<std::uint64_t>(tokens);
}
void Metrics::on_step(std::int64_t rows, std::int64_t sequences) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++steps_;
  batch_rows_.observe(static_cast<double>(rows));
  batch_sequences_.observe(static_cast<double>(sequences));
}
void Metrics::on_first_token(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++generation_tokens_;
  ttft_.observe(seconds);
}
void Metrics::on_next_token(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++generation_tokens_;
  itl_.observe(seconds);
}
void Metrics::on_prefix_reuse(std::int64_t blocks, std::int64_t tokens, std::int64_t revived) {
  std::lock_guard<std::mutex> lock(mutex_);
  prefix_blocks_ += static_cast<std::uint64_t>(blocks);
  prefix_tokens_ += static_cast<std::uint64_t>(tokens);
  prefix_revived_ += static_cast<std::uint64_t>(revived);
}
void Metrics::on_eviction(std::int64_t blocks) {
  std::lock_guard<std::mutex> lock(mutex_);
  evicted_ += static_cast<std::uint64_t>(blocks);
}
void Metrics::on_preemption() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++preemptions_;
}

std::string Metrics::render(const MetricsGauges &g) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  line(out, "moec_requests_total", "counter", "HTTP requests to /v1/*, by status code.");
  for (const auto &[status, n] : requests_)
    out += "moec_requests_total{status=\"" + std::to_string(status) + "\"} " + std::to_string(n) +
           "\n";
  line(out, "moec_prompt_tokens_total", "counter", "Prompt tokens admitted.");
  out += "moec_prompt_tokens_total " + std::to_string(prompt_tokens_) + "\n";
  line(out, "moec_generation_tokens_total", "counter", "Tokens generated.");
  out += "moec_generation_tokens_total " + std::to_string(generation_tokens_) + "\n";
  line(out, "moec_steps_total", "counter", "Calls of the batched step.");
  out += "moec_steps_total " + std::to_string(steps_) + "\n";
  line(out, "moec_preemptions_total", "counter",
       "Sequences preempted (KV blocks freed, recomputed later) because the pool ran out.");
  out += "moec_preemptions_total " + std::to_string(preemptions_) + "\n";
  line(out, "moec_prefix_blocks_reused_total", "counter",
       "KV blocks of a prompt prefix taken from an earlier request instead of computed.");
  out += "moec_prefix_blocks_reused_total " + std::to_string(prefix_blocks_) + "\n";
  line(out, "moec_prefix_tokens_reused_total", "counter",
       "Prompt tokens not prefilled: their KV blocks were found computed (prefix hits).");
  out += "moec_prefix_tokens_reused_total " + std::to_string(prefix_tokens_) + "\n";
  line(out, "moec_prefix_cache_blocks_revived_total", "counter",
       "Reused prefix blocks taken from the cache of finished requests (no request held them).");
  out += "moec_prefix_cache_blocks_revived_total " + std::to_string(prefix_revived_) + "\n";
  line(out, "moec_kv_blocks_evicted_total", "counter",
       "Cached prefix blocks reclaimed, least recently used first, for new positions.");
  out += "moec_kv_blocks_evicted_total " + std::to_string(evicted_) + "\n";
  line(out, "moec_requests_running", "gauge", "Sequences in the running batch.");
  out += "moec_requests_running " + std::to_string(g.running) + "\n";
  line(out, "moec_queue_depth", "gauge", "Requests waiting for a place in the batch.");
  out += "moec_queue_depth " + std::to_string(g.waiting) + "\n";
  line(out, "moec_kv_blocks_used", "gauge", "KV cache blocks held by running requests.");
  out += "moec_kv_blocks_used " + std::to_string(g.kv_blocks_used) + "\n";
  line(out, "moec_kv_blocks_cached", "gauge",
       "KV cache blocks of finished requests' prefixes, kept for reuse until needed.");
  out += "moec_kv_blocks_cached " + std::to_string(g.kv_blocks_cached) + "\n";
  line(out, "moec_kv_blocks_total", "gauge", "KV cache blocks in the pool.");
  out += "moec_kv_blocks_total " + std::to_string(g.kv_blocks_total) + "\n";
  line(out, "moec_time_to_first_token_seconds", "histogram",
       "From a request's arrival to its first generated token.");
  ttft_.render(out, "moec_time_to_first_token_seconds");
  line(out, "moec_inter_token_seconds", "histogram", "Between two tokens of one request.");
  itl_.render(out, "moec_inter_token_seconds");
  line(out, "moec_batch_rows", "histogram", "Rows (tokens) per step.");
  batch_rows_.render(out, "moec_batch_rows");
  line(out, "moec_batch_sequences", "histogram", "Sequences per step.");
  batch_sequences_.render(out, "moec_batch_sequences");
  return out;
}

} // namespace moec
