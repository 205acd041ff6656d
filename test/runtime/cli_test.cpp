// cli_test.cpp — parse_cli: defaults, values, and every kind of bad command line.
#include "moec/cli.h"
#include "moec/error.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace moec {
namespace {

std::string usage_error(const std::vector<std::string> &args) {
  try {
    parse_cli(args);
  } catch (const UsageError &e) {
    return e.what();
  }
  return "";
}

TEST(Cli, Defaults) {
  CliOptions o = parse_cli({});
  EXPECT_FALSE(o.model_dir);
  EXPECT_FALSE(o.prompt);
  EXPECT_FALSE(o.prompt_ids);
  EXPECT_EQ(o.max_new_tokens, 64);
  EXPECT_FLOAT_EQ(o.sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(o.sampling.top_p, 0.9f);
  EXPECT_EQ(o.sampling.top_k, 40);
  EXPECT_FALSE(o.seed);
  EXPECT_FALSE(o.print_ids);
  EXPECT_FALSE(o.threads);
  EXPECT_TRUE(o.add_bos);
  EXPECT_EQ(o.mode, Mode::Generate);
  EXPECT_EQ(o.bench_prompt, 128);
  EXPECT_EQ(o.bench_decode, 32);
  EXPECT_EQ(o.bench_buffer_mib, 1024);
  EXPECT_FALSE(o.test_mem_available);
  EXPECT_FALSE(o.chat_template);
}

TEST(Cli, ParsesEveryFlag) {
  CliOptions o = parse_cli({"--model", "/m", "--prompt", "hi there", "-n", "5", "--temperature",
                            "0", "--top-p=0.5", "--top-k", "0", "--seed", "7", "--print-ids",
                            "--logits-out", "/tmp/l.bin", "--threads", "2", "--tokenizer", "/t",
                            "--no-bos", "-q"});
  EXPECT_EQ(*o.model_dir, "/m");
  EXPECT_EQ(*o.prompt, "hi there");
  EXPECT_EQ(o.max_new_tokens, 5);
  EXPECT_EQ(o.sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(o.sampling.top_p, 0.5f);
  EXPECT_EQ(o.sampling.top_k, 0);
  EXPECT_EQ(*o.seed, 7u);
  EXPECT_TRUE(o.print_ids);
  EXPECT_EQ(*o.logits_out, "/tmp/l.bin");
  EXPECT_EQ(*o.threads, 2);
  EXPECT_EQ(*o.tokenizer, "/t");
  EXPECT_FALSE(o.add_bos);
  EXPECT_TRUE(o.quiet);
  EXPECT_EQ(*parse_cli({"--prompt-ids", "1,415, 2936"}).prompt_ids,
            (std::vector<std::int64_t>{1, 415, 2936}));
  EXPECT_EQ(*parse_cli({"--prompt-ids", " 1 415\t2936 "}).prompt_ids,
            (std::vector<std::int64_t>{1, 415, 2936}));
  EXPECT_EQ(*parse_cli({"--detokenize", "7"}).detokenize, (std::vector<std::int64_t>{7}));
  EXPECT_EQ(parse_cli({"--detokenize", "7"}).mode, Mode::Detokenize);
  EXPECT_EQ(*parse_cli({"--tokenize", ""}).tokenize, "");
  EXPECT_EQ(parse_cli({"--chat"}).mode, Mode::Chat);
  CliOptions b = parse_cli({"--bench", "--bench-prompt", "7", "--bench-decode", "0",
                            "--bench-buffer-mib", "3", "--test-mem-available", "99"});
  EXPECT_EQ(b.mode, Mode::Bench);
  EXPECT_EQ(b.bench_prompt, 7);
  EXPECT_EQ(b.bench_decode, 0);
  EXPECT_EQ(b.bench_buffer_mib, 3);
  EXPECT_EQ(*b.test_mem_available, 99u);
  EXPECT_FALSE(b.max_new_tokens_given);
  EXPECT_TRUE(parse_cli({"-n", "3"}).max_new_tokens_given);
  EXPECT_TRUE(parse_cli({"--help"}).help);
  EXPECT_TRUE(parse_cli({"-h"}).help);
}

TEST(Cli, Errors) {
  struct Case {
    std::vector<std::string> args;
    const char *needle;
  };
  const std::vector<Case> cases = {
      {{"--bogus"}, "unknown flag '--bogus'"},
      {{"stray"}, "unexpected argument 'stray'"},
      {{"--model"}, "--model: missing value DIR"},
      {{"-n"}, "-n: missing value N"},
      {{"-n", "-1"}, "-n: must be >= 0"},
      {{"-n", "abc"}, "-n: expected an integer, got 'abc'"},
      {{"-n", "5x"}, "expected an integer"},
      {{"-n", ""}, "expected an integer"},
      {{"-n", "99999999999999999999"}, "expected an integer"},
      {{"--temperature", "-0.5"}, "--temperature: must be >= 0"},
      {{"--temperature", "warm"}, "expected a finite number"},
      {{"--temperature", "nan"}, "expected a finite number"},
      {{"--top-p", "0"}, "--top-p: must be in (0, 1]"},
      {{"--top-p", "1.5"}, "--top-p: must be in (0, 1]"},
      {{"--top-k", "-3"}, "--top-k: must be in [0, 2^31)"},
      {{"--seed", "-1"}, "--seed: must be >= 0"},
      {{"--threads", "0"}, "--threads: must be in [1, 4096]"},
      {{"--prompt-ids", "1,,2"}, "expected integers separated by commas or spaces"},
      {{"--prompt-ids", "1,x"}, "expected integers separated by commas or spaces"},
      {{"--print-ids=yes"}, "--print-ids: takes no value"},
      {{"--prompt", "a", "--prompt-ids", "1"}, "mutually exclusive"},
      {{"--prompt", "a", "-f", "/x"}, "mutually exclusive"},
      {{"-t", "0.7"}, "-t: expected a thread count, got '0.7' (-t is --threads, as in llama.cpp; "
                      "the temperature is --temp)"},
      {{"-t", "0"}, "-t: must be in [1, 4096], got 0 (-t is --threads"},
      {{"--min-p", "1.5"}, "--min-p: must be in [0, 1]"},
      {{"--presence-penalty", "3"}, "--presence-penalty: must be in [-2, 2]"},
      {{"--frequency-penalty", "-2.5"}, "--frequency-penalty: must be in [-2, 2]"},
      {{"--repeat-penalty", "0"}, "--repeat-penalty: must be > 0"},
      {{"--stop", ""}, "--stop: the stop string must not be empty"},
      {{"--stop", "x", "--print-ids"}, "--stop matches text"},
      {{"--system", "be brief"}, "--system applies to --chat and --chat-template only"},
      {{"--serve", "--prompt", "x"}, "--serve takes its prompts"},
      {{"--serve", "--chat"}, "only one of"},
      {{"--port", "70000"}, "--port: must be in [0, 65535]"},
      {{"--max-batch", "0"}, "--max-batch: must be in [1, 4096]"},
      {{"--api-key", ""}, "--api-key: the key must not be empty"},
      {{"--prompt-ids", "1 x"}, "expected integers separated by commas or spaces"},
      {{"--prompt-ids", "  "}, "expected integers separated by commas or spaces"},
      {{"--detokenize", "1,2,"}, "--detokenize: expected integers"},
      {{"--tokenize"}, "--tokenize: missing value TEXT"},
      {{"--chat", "--bench"}, "--bench: only one of --tokenize, --detokenize, --chat, --bench"},
      {{"--tokenize", "a", "--detokenize", "1"}, "only one of"},
      {{"--tokenize", "a", "--prompt", "b"}, "take no --prompt or --prompt-ids"},
      {{"--chat", "--prompt-ids", "1"}, "--chat takes text turns"},
      {{"--chat-template", "--prompt-ids", "1"}, "--chat-template applies to text"},
      {{"--chat", "--print-ids"}, "apply to plain generation only"},
      {{"--chat", "-n", "0"}, "-n: must be >= 1 with --chat"},
      {{"--bench-prompt", "0"}, "--bench-prompt: must be in [1, 2147483647], got 0"},
      {{"--bench-decode", "-1"}, "--bench-decode: must be in [0, 2147483647], got -1"},
      {{"--bench-buffer-mib", "0"}, "--bench-buffer-mib: must be in [1, 1048576]"},
      {{"--test-mem-available", "-5"}, "--test-mem-available: must be in [0, "},
  };
  for (const Case &c : cases) {
    std::string joined;
    for (const auto &a : c.args)
      joined += a + " ";
    SCOPED_TRACE(joined);
    std::string msg = usage_error(c.args);
    EXPECT_NE(msg.find(c.needle), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Cli, SamplingServeAndLlamaCppFlags) {
  CliOptions o = parse_cli({"-t", "3", "--temp", "0.5", "--min-p", "0.05", "--presence-penalty",
                            "0.5", "--frequency-penalty=-1", "--repeat-penalty", "1.1", "--stop",
                            "\n\n", "--stop", "END", "-m", "/m", "-f", "/p.txt", "-s", "9"});
  EXPECT_EQ(*o.threads, 3);
  EXPECT_FLOAT_EQ(o.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(o.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(o.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(o.sampling.frequency_penalty, -1.0f);
  EXPECT_FLOAT_EQ(o.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(o.stop, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_EQ(*o.model_dir, "/m");
  EXPECT_EQ(*o.prompt_file, "/p.txt");
  EXPECT_EQ(*o.seed, 9u);
  CliOptions c = parse_cli({"--chat", "--system", "Be brief."});
  EXPECT_EQ(*c.system, "Be brief.");
  EXPECT_TRUE(parse_cli({"--version"}).version);
  CliOptions s = parse_cli({"--serve", "--host", "0.0.0.0", "--port", "0", "--api-key", "k",
                            "--max-batch", "8", "--max-queue", "0", "--kv-cache-mib", "64",
                            "--shutdown-timeout", "5", "--served-model-name", "mx"});
  EXPECT_EQ(s.mode, Mode::Serve);
  EXPECT_EQ(s.serve.host, "0.0.0.0");
  EXPECT_EQ(s.serve.port, 0);
  EXPECT_EQ(*s.serve.api_key, "k");
  EXPECT_EQ(s.serve.max_batch, 8);
  EXPECT_EQ(s.serve.max_queue, 0);
  EXPECT_EQ(s.serve.kv_cache_mib, 64);
  EXPECT_EQ(s.serve.shutdown_seconds, 5);
  EXPECT_EQ(*s.serve.model_name, "mx");
  EXPECT_EQ(parse_cli({"--serve"}).serve.host, "127.0.0.1"); // loopback unless told otherwise
}

TEST(Cli, PromptFromFileOrStdin) {
  const std::string path = ::testing::TempDir() + "/cli_prompt.txt";
  {
    std::ofstream f(path, std::ios::binary);
    f << "line one\nline two\n";
  }
  CliOptions o = parse_cli({"-f", path});
  read_prompt_source(o, nullptr);
  EXPECT_EQ(*o.prompt, "line one\nline two\n");
  std::istringstream in("from stdin");
  CliOptions p = parse_cli({"-p", "-"});
  read_prompt_source(p, &in);
  EXPECT_EQ(*p.prompt, "from stdin");
  CliOptions missing = parse_cli({"-f", path + ".missing"});
  try {
    read_prompt_source(missing, nullptr);
    FAIL() << "no error";
  } catch (const UsageError &e) {
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
  }
  CliOptions dir = parse_cli({"-f", ::testing::TempDir()});
  EXPECT_THROW(read_prompt_source(dir, nullptr), UsageError);
}

TEST(Cli, HelpDocumentsEveryFlag) {
  const std::string help = cli_help("model-bin");
  for (const char *flag : {"--model", "--tokenizer", "--prompt", "--prompt-ids", "--no-bos", "-n",
                           "--temperature", "--top-p", "--top-k", "--seed", "--print-ids",
                           "--logits-out", "--threads", "--quiet", "--help", "--chat",
                           "--chat-template", "--tokenize", "--detokenize", "--bench",
                           "--bench-prompt", "--bench-decode", "--bench-buffer-mib",
                           "--test-mem-available", "--temp", "-t", "--min-p",
                           "--presence-penalty", "--frequency-penalty", "--repeat-penalty",
                           "--stop", "--system", "--file", "-f", "--version", "--serve", "--host",
                           "--port", "--api-key", "--max-batch", "--max-queue", "--kv-cache-mib",
                           "--max-body-bytes", "--shutdown-timeout", "--served-model-name"})
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  EXPECT_NE(help.find("usage: model-bin"), std::string::npos);
}

// Flags that would otherwise be ignored without a word (issue 9, part 6).
TEST(Cli, ChatTemplateWithoutTextToWrapIsRefused) {
  EXPECT_EQ(usage_error({"--chat-template"}),
            "--chat-template wraps the text of --prompt or --tokenize; there is none to wrap");
  EXPECT_EQ(usage_error({"--chat-template", "--detokenize", "1"}),
            "--chat-template wraps the text of --prompt or --tokenize; there is none to wrap");
  EXPECT_EQ(usage_error({"--chat-template", "--bench"}),
            "--chat-template wraps the text of --prompt or --tokenize; there is none to wrap");
  EXPECT_EQ(usage_error({"--chat", "--chat-template"}),
            "--chat-template: --chat already wraps every turn as [INST] .. [/INST]; drop the flag");
  EXPECT_EQ(usage_error({"--chat-template", "--prompt", "hi"}), "");
  EXPECT_EQ(usage_error({"--chat-template", "--tokenize", "hi"}), "");
}

} // namespace
} // namespace moec
