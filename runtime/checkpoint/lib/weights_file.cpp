// weights_file.cpp — the packed weights file's header (moec/checkpoint/weights_file.h).
#include "moec/checkpoint/weights_file.h"

#include "moec/abi.h"

#include <cstring>
#include <random>

namespace moec::checkpoint {
namespace {
// Field offsets in the header page.
constexpr std::size_t kMagicAt = 0, kVersionAt = 8, kHeaderBytesAt = 12, kArenaAt = 16,
                      kFileAt = 24, kFingerprintAt = 32, kAbiAt = 64, kUsedBytes = 68;

template <class T> void put(std::string &out, std::size_t at, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i)
    out[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
template <class T> T get(const unsigned char *p, std::size_t at) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<T>(p[at + i]) << (8 * i);
  return v;
}
} // namespace

std::string encode_weights_file_header(const WeightsFileHeader &h) {
  std::string out(kWeightsFileHeaderBytes, '\0');
  std::memcpy(&out[kMagicAt], kWeightsFileMagic, sizeof kWeightsFileMagic);
  put<std::uint32_t>(out, kVersionAt, h.version);
  put<std::uint32_t>(out, kHeaderBytesAt, static_cast<std::uint32_t>(kWeightsFileHeaderBytes));
  put<std::uint64_t>(out, kArenaAt, h.arena_bytes);
  put<std::uint64_t>(out, kFileAt, h.file_bytes);
  std::memcpy(&out[kFingerprintAt], h.fingerprint.data(),
              std::min(h.fingerprint.size(), kFingerprintChars));
  put<std::uint32_t>(out, kAbiAt, h.abi_version);
  return out;
}

std::string fingerprint_problem(const std::string &s) {
  if (s.size() != kFingerprintChars)
    return "must be " + std::to_string(kFingerprintChars) + " hex digits";
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return "must be " + std::to_string(kFingerprintChars) + " lower-case hex digits";
  return "";
}

std::string new_fingerprint() {
  std::random_device rd;
  static const char digits[] = "0123456789abcdef";
  std::string out;
  while (out.size() < kFingerprintChars) {
    std::uint32_t r = rd();
    for (int i = 0; i < 8 && out.size() < kFingerprintChars; ++i, r >>= 4)
      out += digits[r & 15];
  }
  return out;
}

Status check_weights_file_header(const unsigned char *p, std::uint64_t available,
                                 std::uint64_t file_size, const std::string &path,
                                 std::uint64_t arena_bytes, const std::string &fingerprint) {
  const std::string rebuild = "; compile the model again to rewrite it";
  if (available < kUsedBytes || file_size < kWeightsFileHeaderBytes)
    return fail(path + ": is " + std::to_string(file_size) +
                " bytes, too short for a moec weights file (truncated?)" + rebuild);
  if (std::memcmp(p + kMagicAt, kWeightsFileMagic, sizeof kWeightsFileMagic) != 0)
    return fail(path + ": not a moec weights file (bad magic)");
  const auto version = get<std::uint32_t>(p, kVersionAt);
  if (version != kWeightsFileVersion)
    return fail(path + ": weights file version " + std::to_string(version) +
                " but this runtime reads version " + std::to_string(kWeightsFileVersion) + rebuild);
  if (get<std::uint32_t>(p, kHeaderBytesAt) != kWeightsFileHeaderBytes)
    return fail(path + ": header size " + std::to_string(get<std::uint32_t>(p, kHeaderBytesAt)) +
                " is not " + std::to_string(kWeightsFileHeaderBytes) + rebuild);
  const std::string fp(reinterpret_cast<const char *>(p + kFingerprintAt), kFingerprintChars);
  if (fp != fingerprint)
    return fail(path + ": fingerprint " + (fingerprint_problem(fp).empty() ? fp : "(garbled)") +
                " but this binary was compiled with " + fingerprint +
                ": the file belongs to another compile; recompile, or put the binary's own "
                "weights file beside it");
  const auto arena = get<std::uint64_t>(p, kArenaAt), want = get<std::uint64_t>(p, kFileAt);
  if (arena != arena_bytes || want != kWeightsFileHeaderBytes + arena_bytes)
    return fail(path + ": the header describes an arena of " + std::to_string(arena) +
                " bytes but this binary's is " + std::to_string(arena_bytes) + rebuild);
  if (file_size != want)
    return fail(path + ": is " + std::to_string(file_size) + " bytes but its header says " +
                std::to_string(want) + (file_size < want ? " (truncated?)" : "") + rebuild);
  return ok();
}

} // namespace moec::checkpoint
