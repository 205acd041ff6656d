// chat_test.cpp — --chat, --chat-template, --tokenize and --detokenize, driven by the fake model
// (fake_model.h) under a 32000-token manifest with the real Mixtral tokenizer. Skipped without
// MOEC_TOKENIZER_MODEL.
#include "fake_model.h"
#include "moec/run.h"
#include "moec/tokenizer.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <csignal>
#include <cstdlib>
#include <sstream>

namespace moec {
namespace {
using test::fake_log;
using Ids = std::vector<std::int32_t>;

struct Result {
  int rc;
  std::string out, err;
};

Ids cat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const Ids &p : parts)
    out.insert(out.end(), p.begin(), p.end());
  return out;
}

class Chat : public ::testing::Test {
protected:
  void SetUp() override {
    const char *path = std::getenv("MOEC_TOKENIZER_MODEL");
    if (!path || !*path)
      MOEC_SKIP_UNLESS_CI("set MOEC_TOKENIZER_MODEL to a Mixtral tokenizer.model");
    tok_path_ = path;
    tok_ = std::make_unique<Tokenizer>(tok_path_);
    test::write_fake_checkpoint(dir_.file("model.safetensors"));
    test::write_fake_config(dir_.str(), 32000); // the manifest of fake_entry_points(32000)
    fake_log().clear();
  }
  Result run_cli(std::vector<std::string> args, const std::string &input = "") {
    args.insert(args.begin(), {"--model", dir_.str(), "--tokenizer", tok_path_});
    std::istringstream in(input);
    std::ostringstream out, err;
    RunIO io{out, err, false, &in, false};
    const EntryPoints entry = test::fake_entry_points(32000); // resets fake_log().vocab
    int rc = run(args, entry, io, "fake-model");
    return {rc, out.str(), err.str()};
  }
  Ids enc(const std::string &text) const { return tok_->encode(text, std::nullopt); }
  Ids turn(const std::string &user) const { return enc("[INST] " + user + " [/INST]"); }

  std::string tok_path_;
  std::unique_ptr<Tokenizer> tok_;
  test::TempDir dir_;
};

TEST_F(Chat, SecondTurnPrefillsOnlyItsNewTokensWhereTheFirstEnded) {
  const Ids a = enc("Hi there"), b = enc("Bye");
  fake_log().script = cat({a, {2}, b, {2}}); // each answer ends with EOS
  const Result r = run_cli({"--chat", "--temp", "0"}, "Hello\nHow are you?\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "Hi there\nBye\n");

  const Ids t1 = cat({{1}, turn("Hello")});
  const Ids t2 = cat({{2}, turn("How are you?")}); // EOS closing answer 1, then the new turn
  const auto T1 = static_cast<std::int64_t>(t1.size()), A = static_cast<std::int64_t>(a.size());
  // Turn 1: prefill at 0, then one decode per answer token. Turn 2: one prefill at T1 + A (where
  // answer 1's EOS goes) covering only the EOS and the new turn, then its answer.
  std::vector<std::int64_t> positions, counts;
  for (std::int64_t p = 0; p <= T1 + A - 1; ++p)
    if (p == 0 || p >= T1) {
      positions.push_back(p);
      counts.push_back(p == 0 ? T1 : 1);
    }
  const auto T2 = static_cast<std::int64_t>(t2.size());
  positions.push_back(T1 + A);
  counts.push_back(T2);
  for (std::size_t i = 0; i < b.size(); ++i) { // the last one's logits give the EOS
    positions.push_back(T1 + A + T2 + static_cast<std::int64_t>(i));
    counts.push_back(1);
  }
  EXPECT_EQ(fake_log().positions, positions);
  EXPECT_EQ(fake_log().counts, counts);
  EXPECT_EQ(fake_log().prefill_calls, 2);
  EXPECT_EQ(fake_log().kv_mismatches, 0);
  // The cache holds exactly the Mixtral-Instruct conversation so far (answer 2's EOS would be
  // fed with the next turn).
  EXPECT_EQ(fake_log().sequence, cat({t1, a, t2, b}));
  EXPECT_NE(r.err.find("turn 2: prefill " + std::to_string(T2) + " tokens at position " +
                       std::to_string(T1 + A)),
            std::string::npos)
      << r.err;
}

TEST_F(Chat, AnswerCutByMaxTokensIsClosedWithEos) {
  fake_log().script = {500, 501, 502, 503, 600, 2};
  const Result r = run_cli({"--chat", "--temp", "0", "-n", "2"}, "one\ntwo\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  const Ids t1 = cat({{1}, turn("one")});
  const auto T1 = static_cast<std::int64_t>(t1.size());
  // Answer 1 = 500 501 (cut by -n 2); 501 was never fed, so turn 2 prefills it, EOS, the turn.
  const Ids t2 = cat({{501, 2}, turn("two")});
  ASSERT_EQ(fake_log().prefill_calls, 2);
  EXPECT_EQ(fake_log().positions[2], T1 + 1);
  EXPECT_EQ(fake_log().counts[2], static_cast<std::int64_t>(t2.size()));
  EXPECT_EQ(Ids(fake_log().sequence.begin(), fake_log().sequence.begin() + T1 + 1 +
                                                 static_cast<std::int64_t>(t2.size())),
            cat({t1, {500}, t2}));
}

TEST_F(Chat, AnswerThatFillsTheContextEndsTheChat) {
  // No EOS in the script: the fake keeps predicting last + 1 until the 32-token context is full.
  const Result r = run_cli({"--chat", "--temp", "0"}, "Hello\nnever read\n");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("chat: the compiled context of 32 tokens is full; the answer was cut and "
                       "the chat ends"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(fake_log().prefill_calls, 1); // the second line is never sent
  for (std::int64_t p : fake_log().positions)
    EXPECT_LT(p, test::kFakeSeqLen);
  EXPECT_EQ(fake_log().sequence.size(), static_cast<std::size_t>(test::kFakeSeqLen - 1));
  EXPECT_NE(r.err.find("context 32/32"), std::string::npos) << r.err;
}

TEST_F(Chat, MessageThatDoesNotFitIsRefusedAndTheChatGoesOn) {
  fake_log().script = {700, 2};
  std::string long_line;
  for (int i = 0; i < 40; ++i)
    long_line += "word ";
  const Result r = run_cli({"--chat", "--temp", "0", "-q"}, long_line + "\nHi\n");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("of the 32-token context are left; it was not sent"), std::string::npos)
      << r.err;
  EXPECT_EQ(fake_log().prefill_calls, 1);
  EXPECT_EQ(fake_log().positions.front(), 0);
  // BOS goes to the first turn sent; 700 is fed to get the logits that say EOS.
  EXPECT_EQ(fake_log().sequence, cat({{1}, turn("Hi"), {700}}));
  EXPECT_EQ(r.out, tok_->decode({700}) + "\n");
}

TEST_F(Chat, EofEndsCleanlyAndBlankLinesAreSkipped) {
  Result r = run_cli({"--chat", "-q"}, "");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(fake_log().prefill_calls, 0);
  r = run_cli({"--chat", "-q", "--temp", "0"}, "\n   \n\r\n");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(fake_log().prefill_calls, 0);
}

TEST_F(Chat, PromptIsTheFirstTurn) {
  fake_log().script = {700, 2};
  Result r = run_cli({"--chat", "-q", "--temp", "0", "--prompt", "Hi"}, "");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(fake_log().sequence, cat({{1}, turn("Hi"), {700}}));
}

TEST_F(Chat, ChatTemplateWrapsAOneShotPrompt) {
  Result r = run_cli({"--prompt", "Why is the sky blue?", "--chat-template", "-n", "1", "--temp", "0",
                      "--print-ids", "-q"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(fake_log().sequence, cat({{1}, turn("Why is the sky blue?")}));
  r = run_cli({"--prompt", "x", "--chat-template", "--no-bos", "-n", "0", "-q"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(fake_log().sequence, turn("x"));
}

TEST_F(Chat, TokenizeAndDetokenizeNeedNoWeights) {
  // --model points at a directory without a checkpoint: nothing but the tokenizer is loaded.
  const std::string text = "Hello world, ça va? 数字 🙂";
  Result r = run_cli({"--model", dir_.file("nowhere"), "--tokenize", text});
  EXPECT_EQ(r.rc, 0) << r.err;
  const Ids ids = tok_->encode(text, 1);
  std::string want;
  for (std::size_t i = 0; i < ids.size(); ++i)
    want += (i ? " " : "") + std::to_string(ids[i]);
  EXPECT_EQ(r.out, want + "\n");
  EXPECT_EQ(fake_log().prefill_calls, 0);

  r = run_cli({"--model", dir_.file("nowhere"), "--detokenize", want});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, text + "\n");
  std::string commas = want;
  std::replace(commas.begin(), commas.end(), ' ', ',');
  r = run_cli({"--detokenize", commas});
  EXPECT_EQ(r.out, text + "\n");

  r = run_cli({"--tokenize", "Hello", "--no-bos"});
  EXPECT_EQ(r.out, std::to_string(enc("Hello")[0]) + "\n");
  r = run_cli({"--tokenize", "Hi", "--chat-template"});
  std::string templ = "1";
  for (std::int32_t id : turn("Hi"))
    templ += " " + std::to_string(id);
  EXPECT_EQ(r.out, templ + "\n");
  r = run_cli({"--tokenize", ""});
  EXPECT_EQ(r.out, "1\n");

  r = run_cli({"--detokenize", "1,32000"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_EQ(r.err, "error: --detokenize: id 32000 is outside the tokenizer's [0, 32000)\n");
  r = run_cli({"--detokenize", "1,-5"});
  EXPECT_EQ(r.rc, 2);
  r = run_cli({"--tokenizer", dir_.file("missing.model"), "--tokenize", "x"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "error: " + dir_.file("missing.model") + ": tokenizer model does not exist\n");
}

// Ctrl-C during an answer (raised while the model computes the logits after 701): the answer
// stops between tokens, EOS closes it, the KV cache keeps it, and the next turn follows it.
TEST_F(Chat, CtrlCStopsTheAnswerAndTheChatGoesOn) {
  fake_log().script = {700, 701, 702, 2};
  fake_log().sigint_at_call = 3; // prefill, decode(700), decode(701) <- here
  const Result r = run_cli({"--chat", "--temp", "0"}, "Hi\nBye\n");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("chat: answer stopped (Ctrl-C); the chat goes on (Ctrl-C at the prompt or "
                       "EOF ends it)\n"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(fake_log().sequence, cat({{1}, turn("Hi"), {700, 701, 2}, turn("Bye")}));
  EXPECT_EQ(fake_log().kv_mismatches, 0);
  struct sigaction now {};
  ::sigaction(SIGINT, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL); // at the prompt Ctrl-C ends the process
}

// stdout that cannot be written ends --chat, --tokenize and --detokenize with one line, exit 1;
// the chat stops at its first answer token (no decode after it).
TEST_F(Chat, AFailedWriteOnStdoutIsAnError) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--chat", "--temp", "0"}, {"--tokenize", "Hi"},
        {"--detokenize", "1,2"}}) {
    SCOPED_TRACE(args[0]);
    fake_log().clear();
    fake_log().script = {700, 701, 2};
    test::FullBuf full;
    std::ostream out(&full);
    std::istringstream in("Hi\n");
    std::ostringstream err;
    args.insert(args.begin(), {"--model", dir_.str(), "--tokenizer", tok_path_});
    RunIO io{out, err, false, &in, false};
    const int rc = run(args, test::fake_entry_points(32000), io, "fake-model");
    EXPECT_EQ(rc, 1);
    EXPECT_EQ(err.str(), "error: standard output: cannot write: No space left on device\n");
    EXPECT_EQ(fake_log().decode_calls, 0);
  }
}

// --system joins the first user turn as mistral-common's v1 tokenizer writes it; later turns
// are plain.
TEST_F(Chat, SystemPromptIsFoldedIntoTheFirstTurn) {
  fake_log().script = cat({enc("A"), {2}, enc("B"), {2}});
  const Result r = run_cli({"--chat", "--temp", "0", "-q", "--system", "Be brief."}, "Hi\nMore\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(fake_log().sequence,
            cat({{1}, turn("Be brief.\n\nHi"), enc("A"), {2}, turn("More"), enc("B")}));
  const Result t =
      run_cli({"--tokenize", "Hi", "--chat-template", "--system", "Be brief."});
  ASSERT_EQ(t.rc, 0) << t.err;
  std::string expected;
  for (std::int32_t id : cat({{1}, turn("Be brief.\n\nHi")}))
    expected += (expected.empty() ? "" : " ") + std::to_string(id);
  EXPECT_EQ(t.out, expected + "\n");
}

// A stop string split over tokens ends generation before it; neither it nor what follows is
// printed. In --chat it ends the answer (closed with EOS) and the chat goes on.
TEST_F(Chat, StopStringEndsGenerationAndIsNotPrinted) {
  fake_log().script = cat({enc("The answer is 42. END of story")});
  Result r = run_cli({"--prompt", "Q", "--temp", "0", "-n", "20", "--stop", "EN", "-q"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, " The answer is 42. \n"); // " The": the space after the prompt's last word
  fake_log().script = cat({enc("Sure."), enc("Ok"), {2}}); // one id per compiled call
  r = run_cli({"--chat", "--temp", "0", "-q", "--stop", "."}, "Hi\nAgain\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "Sure\nOk\n");
  // Answer 1 is closed after the token that completed the stop string, as -n closes one.
  const Ids sure = enc("Sure.");
  const Ids seq = fake_log().sequence;
  EXPECT_NE(std::search(seq.begin(), seq.end(), sure.begin(), sure.end()), seq.end());
}

} // namespace
} // namespace moec
