// output_test.cpp — what the binary writes: --logits-out onto every kind of path (never
// replacing what is not a regular file, never touching a user's X.tmp, no temporaries left
// behind), write errors on stdout (generation stops at the first one), and Ctrl-C between
// tokens. Driven through run() with the fake model (fake_model.h).
#include "fake_model.h"
#include "moec/run.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <omp.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace moec {
namespace {
namespace fs = std::filesystem;
using test::fake_log;

struct Result {
  int rc;
  std::string out, err;
};

std::string read_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// The fake's logits after prompt 1,2,3: 10 at id 4, 0 elsewhere, as 64 bytes.
std::string expected_logits() {
  std::string bytes(16 * 4, '\0');
  const float ten = 10.0f;
  std::memcpy(&bytes[4 * 4], &ten, 4);
  return bytes;
}

class Output : public ::testing::Test {
protected:
  void SetUp() override {
    test::write_fake_checkpoint(dir_.file("model.safetensors"));
    fake_log().clear();
  }
  Result run_cli(std::vector<std::string> args, std::ostream *out_stream = nullptr) {
    args.insert(args.begin(), {"--model", dir_.str()});
    std::ostringstream out, err;
    RunIO io{out_stream ? *out_stream : out, err, false};
    int rc = run(args, test::fake_entry_points(), io, "fake-model");
    return {rc, out.str(), err.str()};
  }
  Result logits_to(const std::string &path) {
    return run_cli({"--prompt-ids", "1,2,3", "-n", "0", "-q", "--logits-out", path});
  }
  /// The names in the test directory besides the checkpoint, sorted.
  std::vector<std::string> leftovers() const {
    std::vector<std::string> names;
    for (const auto &e : fs::directory_iterator(dir_.str()))
      if (e.path().filename() != "model.safetensors" && e.path().filename() != "config.json")
        names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  test::TempDir dir_;
};

bool is_char_device(const char *path) {
  struct stat s {};
  return ::stat(path, &s) == 0 && S_ISCHR(s.st_mode);
}

TEST_F(Output, DevNullIsWrittenThroughNotReplaced) {
  Result r = logits_to("/dev/null");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(is_char_device("/dev/null"));
}

TEST_F(Output, DevFullIsAnErrorAndStaysADevice) {
  Result r = logits_to("/dev/full");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "error: /dev/full: cannot write: No space left on device\n");
  EXPECT_TRUE(is_char_device("/dev/full"));
}

TEST_F(Output, ANewFileAppearsWhole) {
  const std::string path = dir_.file("logits.bin");
  Result r = logits_to(path);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(read_file(path), expected_logits());
  EXPECT_EQ(leftovers(), std::vector<std::string>{"logits.bin"});
  struct stat s {};
  ASSERT_EQ(::stat(path.c_str(), &s), 0);
  const mode_t mask = ::umask(0);
  ::umask(mask);
  EXPECT_EQ(s.st_mode & 0777, 0666 & ~mask); // as any program's new file, not mkstemp's 0600
}

// A user's "X.tmp" is theirs: the temporary has a unique name, and none is left behind.
TEST_F(Output, AUsersTmpFileSurvivesAndAnOldFileIsReplacedKeepingItsMode) {
  const std::string path = dir_.file("logits.bin");
  test::write_bytes(path + ".tmp", "mine");
  test::write_bytes(path, "old contents");
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  Result r = logits_to(path);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(read_file(path), expected_logits());
  EXPECT_EQ(read_file(path + ".tmp"), "mine");
  EXPECT_EQ(leftovers(), (std::vector<std::string>{"logits.bin", "logits.bin.tmp"}));
  struct stat s {};
  ASSERT_EQ(::stat(path.c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 0777, 0640u);
}

TEST_F(Output, ASymlinkIsFollowedAndKept) {
  fs::create_directory(dir_.file("real"));
  const std::string target = dir_.file("real/logits.bin"), link = dir_.file("link.bin");
  test::write_bytes(target, "old");
  fs::create_symlink(target, link);
  Result r = logits_to(link);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(read_file(target), expected_logits());
  EXPECT_EQ(leftovers(), (std::vector<std::string>{"link.bin", "real"}));
  EXPECT_EQ(fs::directory_iterator(dir_.file("real"))->path().filename(), "logits.bin");
}

TEST_F(Output, AFifoIsWrittenThroughNotReplaced) {
  const std::string fifo = dir_.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] { got = read_file(fifo); });
  Result r = logits_to(fifo);
  reader.join();
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(got, expected_logits());
  struct stat s {};
  ASSERT_EQ(::stat(fifo.c_str(), &s), 0);
  EXPECT_TRUE(S_ISFIFO(s.st_mode));
  EXPECT_EQ(leftovers(), std::vector<std::string>{"fifo"});
}

// /dev/stdout with stdout redirected to a file: the bytes go through the descriptor, at its
// offset, and the file is the same file afterwards (a rename would have swapped it).
TEST_F(Output, DevStdoutRedirectedToAFileIsWrittenThroughTheDescriptor) {
  const std::string path = dir_.file("stdout.bin");
  std::fflush(stdout);
  const int saved = ::dup(1);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "head", 4), 4);
  ::dup2(fd, 1);
  struct stat before {};
  ::fstat(fd, &before);
  Result r = logits_to("/dev/stdout");
  std::fflush(stdout);
  ::dup2(saved, 1);
  ::close(saved);
  ::close(fd);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(read_file(path), "head" + expected_logits());
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
}

// Refused before the model is loaded: nothing runs, nothing is written.
TEST_F(Output, PathsThatCannotBeWrittenAreRefusedBeforeLoading) {
  fs::create_directory(dir_.file("adir"));
  fs::create_symlink(dir_.file("nowhere/x"), dir_.file("dangling"));
  struct Case {
    std::string path, error;
  };
  const std::vector<Case> cases = {
      {dir_.file("adir"), dir_.file("adir") + ": cannot write: it is a directory"},
      {dir_.file("dangling"), dir_.file("dangling") + ": cannot write: it is a dangling symbolic link"},
      {dir_.file("missing/l.bin"),
       dir_.file("missing/l.bin") + ": cannot write: directory " + dir_.file("missing") +
           " does not exist"},
      {"", "the output file name is empty"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.path);
    Result r = logits_to(c.path);
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.err, "error: " + c.error + "\n");
  }
  EXPECT_EQ(fake_log().prefill_calls, 0);
  EXPECT_EQ(leftovers(), (std::vector<std::string>{"adir", "dangling"}));
}

// A write that fails half-way (here: the file size limit) leaves the old file as it was and
// no temporary; the message names the file, not the temporary.
TEST_F(Output, AFailedWriteLeavesTheOldFileAndNoTemporary) {
  const std::string path = dir_.file("logits.bin");
  test::write_bytes(path, "old");
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 10;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  Result r = logits_to(path);
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "error: " + path + ": cannot write: File too large\n");
  EXPECT_EQ(read_file(path), "old");
  EXPECT_EQ(leftovers(), std::vector<std::string>{"logits.bin"});
}

// stdout that cannot be written (a full disk, a closed pipe with SIGPIPE ignored): one line,
// exit 1, and generation stops at the first failed write (no decode step after it).
TEST_F(Output, AFailedWriteOnStdoutStopsGenerationAtOnce) {
  test::FullBuf full;
  std::ostream out(&full);
  Result r = run_cli({"--prompt-ids", "3", "-n", "10", "--temp", "0", "--print-ids", "-q"}, &out);
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "error: standard output: cannot write: No space left on device\n");
  EXPECT_EQ(fake_log().decode_calls, 0);
}

TEST_F(Output, AFailedWriteOnStdoutIsAnErrorInHelp) {
  test::FullBuf full;
  std::ostream out(&full);
  Result r = run_cli({"--help"}, &out);
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "error: standard output: cannot write: No space left on device\n");
}

// Ctrl-C during generation (here: raised while the model computes the 3rd token's logits):
// the loop stops between tokens, prints what it has and the usual timing line, exits 130.
TEST_F(Output, CtrlCStopsGenerationBetweenTokensAndExits130) {
  fake_log().sigint_at_call = 3; // prefill, decode, decode <- here
  Result r = run_cli({"--prompt-ids", "3", "-n", "10", "--temp", "0", "--print-ids"});
  EXPECT_EQ(r.rc, 130);
  EXPECT_EQ(r.out, "4 5\n"); // 6's logits exist, but the loop stops before sampling it
  EXPECT_EQ(fake_log().decode_calls, 2);
  EXPECT_NE(r.err.find("decode: 2 tokens in"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("stopped: interrupted (Ctrl-C)\n"), std::string::npos) << r.err;
  struct sigaction now {};
  ::sigaction(SIGINT, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL); // the handler is gone once generation ends
}

// --threads beyond 4 x the processors is refused before anything runs (libomp aborts when it
// cannot create thousands of threads; fewer processors than threads only take turns).
TEST_F(Output, TooManyThreadsAreRefused) {
  const int procs = omp_get_num_procs();
  const std::string n = std::to_string(4 * procs + 1);
  Result r = run_cli({"--prompt-ids", "3", "-n", "1", "--print-ids", "--threads", n});
  EXPECT_EQ(r.rc, 2);
  EXPECT_EQ(r.err, "error: --threads " + n + ": at most " + std::to_string(4 * procs) +
                       " (4 x the " + std::to_string(procs) +
                       " processors this process may use); more would only take turns on them\n");
  EXPECT_EQ(fake_log().prefill_calls, 0);
  r = run_cli({"--prompt-ids", "3", "-n", "1", "--print-ids", "--threads",
               std::to_string(4 * procs)});
  EXPECT_EQ(r.rc, 0) << r.err;
}

} // namespace
} // namespace moec
