// server.cpp — --serve: an OpenAI-compatible HTTP server (cpp-httplib) over the Scheduler.
//
// Threads: httplib's pool runs the handlers (one per connection; sized for --max-batch running
// plus --max-queue waiting requests plus a few for /health and /metrics); one scheduler thread
// owns the model and runs the batched step; one thread waits for SIGTERM / SIGINT.
//
// A handler parses and checks the request (openai.cpp), submits a Generation and relays its
// tokens: detokenising, matching stop strings (the scheduler only sees ids) and, for a stream,
// writing server-sent events. A client that has gone away is noticed on its connection's
// socket (peer_closed), checked every 100 ms and after every step's tokens, streaming or not
// (a non-streaming answer writes nothing until it ends); a stream's failed write, or its
// ": ping" comment after a second without tokens, notices it too where the socket was not
// found. The handler then cancels the generation and the scheduler frees its blocks at its
// next step.
//
// Shutdown (SIGTERM or Ctrl-C): new requests get 503 and /health says "draining"; requests in
// flight finish, for at most --shutdown-timeout seconds, after which they are cancelled (a
// stream gets an error event, a waiting request 503); then the server closes and exits 0. A
// second signal during the drain cancels at once.
#include "server.h"

#include "driver.h"
#include "moec/abi.h"
#include "moec/error.h"
#include "moec/metrics.h"
#include "moec/scheduler.h"
#include "moec/stop.h"
#include "openai.h"

#include <httplib.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <dirent.h>
#include <netdb.h>
#include <ostream>
#include <poll.h>
#include <pthread.h>
#include <random>
#include <sys/socket.h>

namespace moec {
namespace {
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_id(const char *prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(prefix) + buf;
}

void send_error(httplib::Response &res, int status, const std::string &message,
                const std::string &param = "") {
  res.status = status;
  res.set_content(openai::error_json(status, message, param).dump(), "application/json");
}

/// The numeric address and port of a socket address, as httplib reports a request's.
bool numeric_address(const sockaddr_storage &a, socklen_t len, std::string &host, int &port) {
  char h[NI_MAXHOST], p[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr *>(&a), len, h, sizeof h, p, sizeof p,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return false;
  host = h;
  port = std::atoi(p);
  return true;
}

/// The socket of the connection `req` came on, or -1. cpp-httplib 0.11 (Debian 12's) gives a
/// handler no access to it (later versions have Request::is_connection_closed), so it is found
/// among the process's descriptors by its two addresses, which identify a TCP connection. It
/// stays open, and so the same descriptor, until the response (a stream's too) is written.
int connection_socket(const httplib::Request &req) {
  DIR *dir = opendir("/proc/self/fd");
  if (!dir)
    return -1;
  int found = -1;
  while (const dirent *e = readdir(dir)) {
    char *end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || fd == dirfd(dir))
      continue;
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof local, peer_len = sizeof peer;
    std::string local_host, peer_host;
    int local_port = 0, peer_port = 0;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr *>(&local), &local_len) ||
        getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr *>(&peer), &peer_len) ||
        !numeric_address(local, local_len, local_host, local_port) ||
        !numeric_address(peer, peer_len, peer_host, peer_port))
      continue; // not a connected socket
    if (peer_port == req.remote_port && local_port == req.local_port &&
        peer_host == req.remote_addr && local_host == req.local_addr) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

/// Whether the client closed the connection (or reset it): it sends nothing more after its
/// request, so end-of-stream from it means it is gone. A client that only shuts down its
/// sending side counts as gone too (HTTP clients do not half-close while waiting).
bool peer_closed(int sock) {
  pollfd p{sock, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/// Everything a handler needs.
struct Server {
  const ServeOptions &opt;
  openai::ModelInfo model;
  const Tokenizer &tok;
  Scheduler &scheduler;
  Metrics &metrics;
  std::atomic<bool> draining{false};
};

/// The text of token `id` after token `prev` (sentencepiece drops a leading space at the start
/// of a decoded sequence, so a token is decoded after its predecessor).
std::string token_text(const Tokenizer &tok, std::int32_t prev, std::int32_t id) {
  const std::string before = tok.decode({prev}), both = tok.decode({prev, id});
  return both.compare(0, before.size(), before) == 0 ? both.substr(before.size())
                                                     : tok.decode({id});
}

/// Characters (code points) in the UTF-8 text s[from, to): OpenAI's text_offset counts them.
std::int64_t utf8_chars(const std::string &s, std::size_t from, std::size_t to) {
  std::int64_t n = 0;
  for (std::size_t i = from; i < to; ++i)
    n += (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80;
  return n;
}

/// Turns one Generation's tokens into what the client sees: text, stop strings, logprobs,
/// usage and the finish reason.
class Relay {
public:
  Relay(const Server &server, openai::OpenAiRequest request, std::shared_ptr<Generation> gen)
      : request(std::move(request)), gen(std::move(gen)),
        id(random_id(this->request.chat ? "chatcmpl-" : "cmpl-")), created(unix_time()),
        model(server.model.name), server_(server),
        decoder_(server.tok, this->request.generation.prompt), stop_(this->request.stop),
        prev_(this->request.generation.prompt.back()) {}

  /// Waits at most `timeout` for tokens; appends the text now shown and its tokens' views.
  /// Returns true once the generation has ended (finish() then says how).
  bool poll(std::string &text, std::vector<openai::TokenView> &views,
            std::chrono::milliseconds timeout) {
    if (finish_ != FinishReason::None)
      return true;
    std::vector<GeneratedToken> got;
    const FinishReason f = gen->wait(got, timeout);
    const std::size_t start = text.size(); // `text` may hold earlier polls' text
    for (const GeneratedToken &t : got) {
      ++completion_tokens_;
      const std::string shown = stop_.push(decoder_.push(t.id));
      if (request.generation.top_logprobs >= 0) {
        openai::TokenView v;
        v.text = token_text(server_.tok, prev_, t.id);
        v.offset = offset_ + utf8_chars(text, start, text.size());
        v.logprob = t.logprobs.chosen;
        for (const auto &[alt, lp] : t.logprobs.top)
          v.top.emplace_back(token_text(server_.tok, prev_, alt), lp);
        views.push_back(std::move(v));
      }
      text += shown;
      prev_ = t.id;
      if (stop_.stopped()) { // the scheduler drops it at its next step
        gen->cancel();
        finish_ = FinishReason::Stop;
        break;
      }
    }
    if (finish_ == FinishReason::None && f != FinishReason::None) {
      text += stop_.push(decoder_.finish());
      text += stop_.finish();
      finish_ = f;
    }
    offset_ += utf8_chars(text, start, text.size());
    return finish_ != FinishReason::None;
  }

  FinishReason finish() const { return finish_; }
  openai::Usage usage() const {
    return {static_cast<std::int64_t>(request.generation.prompt.size()), completion_tokens_};
  }
  /// The error a request that did not end with stop/length reports.
  std::pair<int, std::string> failure() const {
    if (finish_ == FinishReason::Cancelled)
      return {503, "the server is shutting down; the request was cancelled"};
    return {500, "generation failed: " + gen->error()};
  }

  const openai::OpenAiRequest request;
  const std::shared_ptr<Generation> gen;
  const std::string id;
  const std::int64_t created;
  const std::string model;

private:
  const Server &server_;
  StreamDecoder decoder_;
  StopMatcher stop_;
  std::int32_t prev_;
  std::int64_t completion_tokens_ = 0, offset_ = 0; // offset_: characters shown so far
  FinishReason finish_ = FinishReason::None;
};

std::string sse(const json &j) { return "data: " + j.dump() + "\n\n"; }

/// One call of the stream's content provider: relays what arrived within 100 ms. Returns false
/// when the client is gone (the generation is then cancelled).
bool pump(Relay &relay, httplib::DataSink &sink, bool &first, Clock::time_point &last_write) {
  const openai::OpenAiRequest &r = relay.request;
  auto write = [&](const std::string &s) {
    last_write = Clock::now();
    if (sink.write(s.data(), s.size()))
      return true;
    relay.gen->cancel();
    return false;
  };
  const std::string &name = relay.model;
  if (first && r.chat) {
    if (!write(sse(openai::chunk_json(r, relay.id, relay.created, name, "", {}, nullptr, true))))
      return false;
  }
  first = false;
  std::string text;
  std::vector<openai::TokenView> views;
  const bool ended = relay.poll(text, views, 100ms);
  if (!text.empty() || !views.empty())
    if (!write(sse(openai::chunk_json(r, relay.id, relay.created, name, text, views, nullptr,
                                      false))))
      return false;
  if (!ended) {
    if (Clock::now() - last_write > 1s && !write(": ping\n\n"))
      return false;
    return true;
  }
  if (relay.finish() == FinishReason::Stop || relay.finish() == FinishReason::Length) {
    if (!write(sse(openai::chunk_json(r, relay.id, relay.created, name, "", {},
                                      finish_reason_name(relay.finish()), false))))
      return false;
    if (r.include_usage &&
        !write(sse(openai::usage_chunk_json(r, relay.id, relay.created, name, relay.usage()))))
      return false;
  } else {
    const auto [status, message] = relay.failure();
    if (!write(sse(openai::error_json(status, message))))
      return false;
  }
  if (!write("data: [DONE]\n\n"))
    return false;
  sink.done();
  return true;
}

void handle_generate(Server &server, const httplib::Request &req, httplib::Response &res,
                     bool chat) {
  if (server.draining) {
    send_error(res, 503, "the server is shutting down");
    return;
  }
  openai::OpenAiRequest r = chat ? openai::parse_chat(req.body, server.model)
                                 : openai::parse_completion(req.body, server.model);
  auto gen = std::make_shared<Generation>(r.generation);
  switch (server.scheduler.submit(gen)) {
  case Scheduler::Admit::Ok:
    break;
  case Scheduler::Admit::QueueFull:
    send_error(res, 429, "the request queue is full (--max-queue " +
                             std::to_string(server.opt.max_queue) + "); retry later");
    return;
  case Scheduler::Admit::TooLarge: {
    const std::int64_t P = static_cast<std::int64_t>(r.generation.prompt.size());
    const bool prompt_alone = P >= server.scheduler.pool_positions();
    send_error(res, 400,
               (prompt_alone ? "the prompt needs " + std::to_string(P)
                             : "the prompt and max_tokens need " +
                                   std::to_string(P + r.generation.max_tokens)) +
                   " positions but the KV cache holds " +
                   std::to_string(server.scheduler.pool_positions()) + " (--kv-cache-mib)" +
                   (prompt_alone ? "" : "; lower max_tokens"),
               prompt_alone ? (chat ? "messages" : "prompt") : "max_tokens");
    return;
  }
  case Scheduler::Admit::Draining:
    send_error(res, 503, "the server is shutting down");
    return;
  }
  auto relay = std::make_shared<Relay>(server, std::move(r), gen);
  const int sock = connection_socket(req); // open until the response has been written
  if (!relay->request.stream) {
    std::string text;
    std::vector<openai::TokenView> views;
    while (!relay->poll(text, views, 100ms))
      if (sock >= 0 && peer_closed(sock)) { // nobody will read the answer: free it now
        relay->gen->cancel();
        send_error(res, 499, "the client closed the connection");
        return;
      }
    if (relay->finish() != FinishReason::Stop && relay->finish() != FinishReason::Length) {
      const auto [status, message] = relay->failure();
      send_error(res, status, message);
      return;
    }
    res.set_content(openai::response_json(relay->request, relay->id, relay->created,
                                          relay->model, text, views,
                                          finish_reason_name(relay->finish()), relay->usage())
                        .dump(),
                    "application/json");
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  auto first = std::make_shared<bool>(true);
  auto last_write = std::make_shared<Clock::time_point>(Clock::now());
  res.set_chunked_content_provider(
      "text/event-stream",
      [relay, first, last_write, sock](std::size_t, httplib::DataSink &sink) {
        if (sock >= 0 && peer_closed(sock)) { // gone: noticed before a write has to fail
          relay->gen->cancel();
          return false;
        }
        return pump(*relay, sink, *first, *last_write);
      },
      [relay](bool) { relay->gen->cancel(); }); // done or client gone: free the blocks now
}

json models_json(const Server &server) {
  return {{"object", "list"},
          {"data",
           json::array({{{"id", server.model.name},
                         {"object", "model"},
                         {"created", 0},
                         {"owned_by", "moec"},
                         {"max_model_len", server.model.max_seq_len}}})}};
}

void install_routes(httplib::Server &http, Server &server) {
  http.set_payload_max_length(static_cast<std::size_t>(server.opt.max_body_bytes));
  http.set_pre_routing_handler([&server](const httplib::Request &req, httplib::Response &res) {
    if (!server.opt.api_key || req.path.rfind("/v1/", 0) != 0)
      return httplib::Server::HandlerResponse::Unhandled; // /health and /metrics are open
    if (req.get_header_value("Authorization") != "Bearer " + *server.opt.api_key) {
      send_error(res, 401, "Incorrect API key provided");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  auto guarded = [&server](bool chat) {
    return [&server, chat](const httplib::Request &req, httplib::Response &res) {
      try {
        handle_generate(server, req, res, chat);
      } catch (const openai::ApiError &e) {
        send_error(res, e.status, e.what(), e.param);
      }
    };
  };
  http.Post("/v1/completions", guarded(false));
  http.Post("/v1/chat/completions", guarded(true));
  http.Get("/v1/models", [&server](const httplib::Request &, httplib::Response &res) {
    res.set_content(models_json(server).dump(), "application/json");
  });
  http.Get("/health", [&server](const httplib::Request &, httplib::Response &res) {
    res.status = server.draining ? 503 : 200;
    res.set_content(json{{"status", server.draining ? "draining" : "ok"}}.dump(),
                    "application/json");
  });
  http.Get("/metrics", [&server](const httplib::Request &, httplib::Response &res) {
    const Scheduler::Snapshot s = server.scheduler.snapshot();
    MetricsGauges g{s.running, s.waiting, s.blocks_used, s.blocks_cached, s.blocks_total};
    res.set_content(server.metrics.render(g), "text/plain; version=0.0.4");
  });
  // Bodies httplib itself refused (413 over --max-body-bytes, 404 unknown path, 400 bad
  // HTTP) and exceptions get the OpenAI error shape too.
  http.set_error_handler([&server](const httplib::Request &, httplib::Response &res) {
    if (!res.body.empty())
      return;
    const std::string message =
        res.status == 413 ? "the request body is over the limit of " +
                                std::to_string(server.opt.max_body_bytes) +
                                " bytes (--max-body-bytes)"
        : res.status == 404 ? "no such endpoint"
                            : "the request was refused (HTTP status " + std::to_string(res.status) + ")";
    res.set_content(openai::error_json(res.status, message).dump(), "application/json");
  });
  http.set_exception_handler(
      [](const httplib::Request &, httplib::Response &res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception &e) {
          what = e.what();
        } catch (...) {
        }
        send_error(res, 500, what);
      });
  http.set_logger([&server](const httplib::Request &req, const httplib::Response &res) {
    if (req.path.rfind("/v1/", 0) == 0)
      server.metrics.on_request(res.status);
  });
}

/// The paged KV pool's geometry: blocks of B positions, --kv-cache-mib of them (default: room
/// for --max-batch sequences of the full context).
struct PoolSize {
  std::int64_t block_size, max_blocks_per_seq, n_blocks, block_bytes;
};
PoolSize pool_size(const Manifest &m, const ServeOptions &opt) {
  const ModelConfig &c = m.config;
  PoolSize p;
  p.block_size = m.step->kv_block_size;
  p.max_blocks_per_seq = m.step->max_blocks_per_seq;
  p.block_bytes = c.num_hidden_layers * 2 * p.block_size * c.num_key_value_heads * c.head_dim *
                  static_cast<std::int64_t>(sizeof(float));
  p.n_blocks = opt.kv_cache_mib > 0 ? (opt.kv_cache_mib << 20) / p.block_bytes
                                    : opt.max_batch * p.max_blocks_per_seq;
  if (p.n_blocks < 1)
    throw UsageError("--kv-cache-mib " + std::to_string(opt.kv_cache_mib) +
                     ": holds no KV block (a block of " + std::to_string(p.block_size) +
                     " positions takes " + std::to_string(p.block_bytes >> 10) + " KiB)");
  return p;
}

/// Blocks SIGTERM and SIGINT in this thread (and the threads it starts); restores on exit.
struct SignalMask {
  sigset_t set{}, old{};
  SignalMask() {
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, &old);
  }
  ~SignalMask() { pthread_sigmask(SIG_SETMASK, &old, nullptr); }
};

SchedulerOptions scheduler_options(const CliOptions &opt, const Manifest &m,
                                   const PoolSize &pool) {
  SchedulerOptions o;
  o.max_batch = opt.serve.max_batch;
  o.max_queue = opt.serve.max_queue;
  o.step_tokens = std::clamp<std::int64_t>(opt.prefill_chunk, opt.serve.max_batch,
                                           MOEC_STEP_MAX_ROWS);
  o.n_blocks = pool.n_blocks;
  o.block_size = pool.block_size;
  o.max_blocks_per_seq = pool.max_blocks_per_seq;
  o.max_seq_len = m.max_seq_len;
  o.vocab_size = m.config.vocab_size;
  o.eos_id = m.config.eos_token_id;
  return o;
}

/// Runs the bound server until SIGTERM / SIGINT, then drains (see the file's header).
void run_until_signal(httplib::Server &http, Server &server, const SignalMask &mask, RunIO &io) {
  std::thread signals([&] {
    int sig = 0;
    sigwait(&mask.set, &sig);
    server.draining = true;
    server.scheduler.drain();
    io.err << "serve: " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << ", finishing requests in "
           << "flight (at most " << server.opt.shutdown_seconds << " s)\n" << std::flush;
    const auto deadline =
        Clock::now() + std::chrono::duration<double>(server.opt.shutdown_seconds);
    while (Clock::now() < deadline) {
      const Scheduler::Snapshot s = server.scheduler.snapshot();
      if (s.running == 0 && s.waiting == 0)
        break;
      const timespec tick{0, 20 * 1000 * 1000};
      if (sigtimedwait(&mask.set, nullptr, &tick) > 0) { // a second signal: do not wait
        io.err << "serve: second signal, cancelling the requests in flight\n" << std::flush;
        break;
      }
    }
    server.scheduler.stop(); // cancels what is left; its handlers end their responses
    std::this_thread::sleep_for(200ms); // let them write their last event
    http.stop();
  });
  http.listen_after_bind();
  const bool unexpected = !server.draining;
  if (unexpected) // listen ended on its own: wake the signal thread so that it ends too
    pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  // Signals that came after the first are consumed here, so that restoring the mask on return
  // does not deliver them (their default action would turn exit 0 into death by signal).
  const timespec now{0, 0};
  while (sigtimedwait(&mask.set, nullptr, &now) > 0) {
  }
  if (unexpected)
    throw Error("--serve: the HTTP server stopped unexpectedly");
}

} // namespace

int serve(const CliOptions &opt, const Manifest &m, const EntryPoints &entry, RunIO &io) {
  if (!entry.step || !m.step) // what the object exports: checked before anything loads
    throw Error("--serve: this binary has no batched step (moec_step); the " + m.target +
                " target does not export one yet");
  const ServeOptions &so = opt.serve;
  const PoolSize pool = pool_size(m, so);
  // Before any thread starts (OpenMP's while loading, the scheduler's, httplib's), so that only
  // the signal thread takes SIGTERM / SIGINT; one that arrives while loading waits for it.
  SignalMask mask;
  driver::model_dir(opt, m); // fail early when there is none
  std::unique_ptr<Tokenizer> tok = driver::load_tokenizer(opt, m, /*check_vocab=*/true);
  // Bound before the weights load: a port in use is reported at once; clients that connect
  // while the model loads wait in the listen backlog.
  httplib::Server http;
  // httplib's default is SO_REUSEPORT, with which a second server binds the same port and the
  // kernel splits the connections between them; SO_REUSEADDR alone makes a port in use an
  // error while still allowing a restart over connections in TIME_WAIT.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  const int port = so.port == 0 ? http.bind_to_any_port(so.host)
                                : (http.bind_to_port(so.host, so.port) ? so.port : -1);
  if (port < 0)
    throw Error("--serve: cannot listen on " + so.host + ":" + std::to_string(so.port) +
                " (in use, or not an address of this machine)");
  std::unique_ptr<Backend> backend = make_backend(m, entry);
  driver::load_model(*backend, m, opt, io);
  backend->allocate_kv_pool(static_cast<std::uint64_t>(pool.n_blocks * pool.block_bytes));
  backend->warm_up();

  // The step runs on the scheduler thread: it gets the main thread's OpenMP thread count
  // (--threads), which is per thread in OpenMP.
  const int omp_threads = omp_get_max_threads();
  StepFunction step = [&, omp_threads](StepBatch &b) {
    static thread_local bool threads_set = false;
    if (!threads_set) {
      omp_set_num_threads(omp_threads);
      threads_set = true;
    }
    backend->step(pool.n_blocks, b.tokens.data(), b.positions.data(), b.block_tables.data(),
                  b.n_rows(), b.logit_rows.data(), static_cast<std::int64_t>(b.logit_rows.size()),
                  b.logits.data());
  };
  Metrics metrics;
  Scheduler scheduler(scheduler_options(opt, m, pool), step, &metrics);
  Server server{so,
                {*so.model_name, tok.get(), m.config, m.max_seq_len, scheduler.pool_positions()},
                *tok, scheduler, metrics};
  const std::size_t threads = static_cast<std::size_t>(so.max_batch + so.max_queue + 8);
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  install_routes(http, server);
  scheduler.start();

  char mib[64];
  std::snprintf(mib, sizeof mib, "%.1f",
                static_cast<double>(pool.n_blocks * pool.block_bytes) / (1 << 20));
  io.err << "serve: model '" << *so.model_name << "' on http://" << so.host << ":" << port
         << " (max batch " << so.max_batch << ", queue " << so.max_queue << ", KV cache "
         << pool.n_blocks << " blocks of " << pool.block_size << " positions, " << mib
         << " MiB)\n" << std::flush;
  run_until_signal(http, server, mask, io);
  scheduler.stop();
  io.err << "serve: stopped\n" << std::flush;
  return 0;
}

} // namespace moec
