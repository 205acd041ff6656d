// safetensors_test.cpp — the checkpoint reader: good files, sharded indexes, every malformed case.
#include "moec/error.h"
#include "moec/safetensors.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

namespace moec {
namespace {
using test::f32_iota;
using test::TempDir;
using test::write_bytes;
using test::write_raw_safetensors;
using test::write_safetensors;

/// Opens `path` and returns the moec::Error message ("" if it opened).
std::string open_error(const std::string &path) {
  try {
    Checkpoint::open(path);
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

#define EXPECT_OPEN_ERROR(path, needle)                                                           \
  do {                                                                                            \
    std::string msg = open_error(path);                                                           \
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;                         \
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;                \
  } while (0)

TEST(Safetensors, ReadsTensorsAndMetadata) {
  TempDir dir;
  std::string bf16(2 * 3 * 2, '\x7f');
  write_safetensors(dir.file("a.safetensors"), {{"w", "F32", {2, 3}, f32_iota(6)},
                                                {"b", "BF16", {2, 3}, bf16},
                                                {"h", "F16", {1}, std::string(2, '\0')},
                                                {"i", "I64", {2}, std::string(16, '\0')},
                                                {"empty", "F32", {0, 4}, ""}});
  Checkpoint c = Checkpoint::open(dir.file("a.safetensors"));
  EXPECT_EQ(c.size(), 5u);
  const TensorView &w = c.get("w");
  EXPECT_EQ(w.dtype, DType::F32);
  EXPECT_EQ(w.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(w.nbytes, 24u);
  EXPECT_EQ(w.file, dir.file("a.safetensors"));
  float v[6];
  std::memcpy(v, w.data, 24);
  EXPECT_EQ(v[5], 5.0f);
  EXPECT_EQ(c.get("b").dtype, DType::BF16);
  EXPECT_EQ(c.get("h").dtype, DType::F16);
  EXPECT_EQ(c.get("i").dtype, DType::I64);
  EXPECT_EQ(c.get("empty").nbytes, 0u);
  EXPECT_EQ(c.find("nope"), nullptr);
  EXPECT_THROW(c.get("nope"), Error);
  EXPECT_EQ(c.names().front(), "b");
  SafetensorsFile f(dir.file("a.safetensors"));
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(Safetensors, OpensDirectoryWithSingleFile) {
  TempDir dir;
  write_safetensors(dir.file("model.safetensors"), {{"x", "F32", {1}, f32_iota(1)}});
  EXPECT_NE(Checkpoint::open(dir.str()).find("x"), nullptr);
}

TEST(Safetensors, MissingFileAndEmptyDirectory) {
  TempDir dir;
  EXPECT_OPEN_ERROR(dir.file("nope.safetensors"), "does not exist");
  EXPECT_OPEN_ERROR(dir.str(), "neither model.safetensors.index.json nor model.safetensors");
}

TEST(Safetensors, FileShorterThanHeaderLength) {
  TempDir dir;
  write_bytes(dir.file("short.safetensors"), "abc");
  EXPECT_OPEN_ERROR(dir.file("short.safetensors"), "shorter than the 8-byte");
  EXPECT_OPEN_ERROR(dir.file("short.safetensors"), dir.file("short.safetensors"));
  write_bytes(dir.file("zero.safetensors"), "");
  EXPECT_OPEN_ERROR(dir.file("zero.safetensors"), "file is 0 bytes");
}

TEST(Safetensors, HeaderLengthPastEndOfFile) {
  TempDir dir;
  write_raw_safetensors(dir.file("a.safetensors"), "{}", "", 1000);
  EXPECT_OPEN_ERROR(dir.file("a.safetensors"), "header length 1000 runs past the end");
  write_raw_safetensors(dir.file("b.safetensors"), "{}", "", UINT64_MAX - 1);
  EXPECT_OPEN_ERROR(dir.file("b.safetensors"), "runs past the end");
}

TEST(Safetensors, HeaderNotJsonOrNotObject) {
  TempDir dir;
  write_raw_safetensors(dir.file("a.safetensors"), "{not json");
  EXPECT_OPEN_ERROR(dir.file("a.safetensors"), "header is not valid JSON");
  write_raw_safetensors(dir.file("b.safetensors"), "[1, 2]");
  EXPECT_OPEN_ERROR(dir.file("b.safetensors"), "header is not a JSON object");
  write_raw_safetensors(dir.file("c.safetensors"), "");
  EXPECT_OPEN_ERROR(dir.file("c.safetensors"), "header is not valid JSON");
}

TEST(Safetensors, MalformedEntries) {
  TempDir dir;
  struct Case {
    std::string header, data, needle;
  };
  const std::vector<Case> cases = {
      {R"({"w": 3})", "", "tensor 'w': entry is not a JSON object"},
      {R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", "1234", "missing or non-string \"dtype\""},
      {R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", "1234", "non-array \"shape\""},
      {R"({"w": {"dtype": "F32", "shape": [1]}})", "1234", "\"data_offsets\" is not an array"},
      {R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", "1234", "data_offsets"},
      {R"({"w": {"dtype": "Q4_K", "shape": [1], "data_offsets": [0, 4]}})", "1234",
       "unknown dtype 'Q4_K'"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", "1234",
       "needs 8 bytes but data_offsets [0,4] span 4"},
      {R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", "1234",
       "not a non-negative integer"},
      {R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", "1234",
       "not a non-negative integer"},
      {R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", "1234",
       "are not non-negative integers"},
      {R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", "1234",
       "begin after they end"},
      {R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", "1234",
       "run past the end of the data (4 bytes)"},
      {R"({"w": {"dtype": "F32", "shape": [99999999999999999999], "data_offsets": [0, 4]}})",
       "1234", "not a non-negative integer"},
      {R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})",
       "1234", "overflows a 64-bit byte count"},
      {R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 18446744073709551615]}})",
       "1234", "are not non-negative integers"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
       std::string(12, '\0'), "tensors 'a' and 'b' overlap"},
      {R"({"__metadata__": [1]})", "", "__metadata__ is not a JSON object"},
      {R"({"__metadata__": {"k": 1}})", "", "__metadata__ value for 'k' is not a string"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i) + ": " + cases[i].header);
    const std::string path = dir.file("case" + std::to_string(i) + ".safetensors");
    write_raw_safetensors(path, cases[i].header, cases[i].data);
    EXPECT_OPEN_ERROR(path, cases[i].needle);
    EXPECT_OPEN_ERROR(path, path); // every message names the file
  }
}

TEST(Safetensors, TruncatedFile) {
  TempDir dir;
  write_safetensors(dir.file("a.safetensors"),
                    {{"w", "F32", {4}, f32_iota(4)}, {"v", "F32", {4}, f32_iota(4)}});
  std::ifstream in(dir.file("a.safetensors"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_bytes(dir.file("cut.safetensors"), bytes.substr(0, bytes.size() - 5)); // data cut
  EXPECT_OPEN_ERROR(dir.file("cut.safetensors"),
                    dir.file("cut.safetensors") + ": tensor 'v': data_offsets [16,32] run past "
                                                  "the end of the data (27 bytes)");
  write_bytes(dir.file("cut2.safetensors"), bytes.substr(0, 20)); // header cut
  EXPECT_OPEN_ERROR(dir.file("cut2.safetensors"), "runs past the end of the file (20 bytes)");
}

TEST(Safetensors, HostileHeaders) {
  TempDir dir;
  // Deeply nested values must not recurse (parser or error message) until the stack runs out.
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  write_raw_safetensors(dir.file("deep.safetensors"),
                        R"({"w": {"dtype": "F32", "shape": )" + deep +
                            R"(, "data_offsets": [0, 4]}})",
                        "1234");
  EXPECT_OPEN_ERROR(dir.file("deep.safetensors"), "tensor 'w': shape has an entry");
  write_raw_safetensors(dir.file("deep2.safetensors"), deep);
  EXPECT_OPEN_ERROR(dir.file("deep2.safetensors"), "header is not a JSON object");
  // Names with newlines or control bytes, and huge names, stay on one short line.
  write_raw_safetensors(dir.file("nl.safetensors"),
                        R"({"a\nb\u0001": {"dtype": "X", "shape": [1], "data_offsets": [0, 4]}})",
                        "1234");
  EXPECT_OPEN_ERROR(dir.file("nl.safetensors"), R"(tensor 'a\x0ab\x01': unknown dtype 'X')");
  write_raw_safetensors(dir.file("long.safetensors"),
                        "{\"" + std::string(100000, 'n') +
                            R"(": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}})",
                        "12345678");
  EXPECT_LT(open_error(dir.file("long.safetensors")).size(), 400u);
  // Numbers beyond 64 bits, floats where integers belong, a non-UTF-8 header.
  write_raw_safetensors(dir.file("big.safetensors"),
                        R"({"w": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}})",
                        "1234");
  EXPECT_OPEN_ERROR(dir.file("big.safetensors"), dir.file("big.safetensors") + ": ");
  write_raw_safetensors(dir.file("utf8.safetensors"), "{\"\xff\xfe\": 1}");
  EXPECT_OPEN_ERROR(dir.file("utf8.safetensors"), "header is not valid JSON");
}

TEST(Safetensors, HeaderPaddingAndZeroSizeTensorsAreFine) {
  TempDir dir;
  write_raw_safetensors(dir.file("a.safetensors"),
                        R"({"e": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},)"
                        R"( "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})"
                        "        ",
                        "1234");
  Checkpoint c = Checkpoint::open(dir.file("a.safetensors"));
  EXPECT_EQ(c.size(), 2u);
}

void write_index(const std::string &path, const nlohmann::json &weight_map) {
  write_bytes(path, nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}
                        .dump());
}

TEST(Safetensors, ShardedCheckpoint) {
  TempDir dir;
  write_safetensors(dir.file("model-00001-of-00002.safetensors"),
                    {{"a", "F32", {2}, f32_iota(2)}, {"b", "F32", {1}, f32_iota(1, 7)}});
  write_safetensors(dir.file("model-00002-of-00002.safetensors"), {{"c", "F32", {3}, f32_iota(3)}});
  write_index(dir.file("model.safetensors.index.json"),
              {{"a", "model-00001-of-00002.safetensors"},
               {"b", "model-00001-of-00002.safetensors"},
               {"c", "model-00002-of-00002.safetensors"}});
  for (const std::string &p : {dir.str(), dir.file("model.safetensors.index.json")}) {
    Checkpoint c = Checkpoint::open(p);
    EXPECT_EQ(c.size(), 3u);
    EXPECT_EQ(c.get("c").file, dir.file("model-00002-of-00002.safetensors"));
    float b;
    std::memcpy(&b, c.get("b").data, 4);
    EXPECT_EQ(b, 7.0f);
  }
}

TEST(Safetensors, ShardErrors) {
  TempDir dir;
  write_safetensors(dir.file("s1.safetensors"), {{"a", "F32", {1}, f32_iota(1)}});
  write_safetensors(dir.file("s2.safetensors"), {{"a", "F32", {1}, f32_iota(1)}});
  const std::string index = dir.file("model.safetensors.index.json");

  write_index(index, {{"a", "s1.safetensors"}, {"x", "missing.safetensors"}});
  EXPECT_OPEN_ERROR(index, "missing.safetensors");
  EXPECT_OPEN_ERROR(index, "does not exist");

  write_index(index, {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
  EXPECT_OPEN_ERROR(index, "tensor 'a' appears in both");

  write_index(index, {{"zz", "s1.safetensors"}});
  EXPECT_OPEN_ERROR(index, "weight_map puts 'zz'");

  write_index(index, {{"a", 3}});
  EXPECT_OPEN_ERROR(index, "weight_map entry for 'a' is not a string");

  write_bytes(index, "{\"weight_map\": 1}");
  EXPECT_OPEN_ERROR(index, "non-object \"weight_map\"");

  write_bytes(index, "{oops");
  EXPECT_OPEN_ERROR(index, "not valid JSON");

  write_index(index, nlohmann::json::object());
  EXPECT_OPEN_ERROR(index, "weight_map is empty");

  // One rule for shard names, the compiler's too: a .safetensors file in the index's folder.
  const std::pair<const char *, const char *> bad_shards[] = {
      {"../s1.safetensors", "is '../s1.safetensors', which is not a plain file name (it holds a '/')"},
      {"sub/s1.safetensors", "is 'sub/s1.safetensors', which is not a plain file name (it holds a '/')"},
      {"/etc/passwd", "is '/etc/passwd', which is not a plain file name (it holds a '/')"},
      {"", "is '', which does not end in \".safetensors\""},
      {"..", "is '..', which holds \"..\""},
      {"s1.bin", "is 's1.bin', which does not end in \".safetensors\""}};
  for (auto [shard, message] : bad_shards) {
    write_index(index, {{"a", shard}});
    EXPECT_OPEN_ERROR(index, std::string("weight_map entry for 'a' ") + message +
                                 "; shards must be .safetensors files in the index's folder");
  }
}

} // namespace
} // namespace moec
