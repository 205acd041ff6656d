// moec/checkpoint/weights_file.h — the packed weights file (OUT.weights) and its header.
//
// `mixtral-compile --pack` (and --quantize, which implies it) writes OUT.weights beside OUT:
// one header page, then the weights arena exactly as the generated code reads it (the
// manifest's offsets are relative to byte kWeightsFileHeaderBytes of the file). The binary maps
// the file read-only and passes the mapping as the ABI's `weights` pointer: no copy, no second
// read of any byte, and the resident memory of the weights is the file's page cache.
//
// Header (little-endian, at offset 0, zero-padded to kWeightsFileHeaderBytes):
//   char     magic[8]        "MOECWTS\0"
//   uint32   version         kWeightsFileVersion
//   uint32   header_bytes    kWeightsFileHeaderBytes: where the arena starts (page-aligned)
//   uint64   arena_bytes     the manifest's weights.bytes
//   uint64   file_bytes      header_bytes + arena_bytes: the file's exact size
//   char     fingerprint[32] 32 lower-case hex digits, the manifest's weights_file.fingerprint
//   uint32   abi_version     MOEC_ABI_VERSION of the compiler that wrote it
// The fingerprint is a random 128-bit number drawn by each compile: it binds the file to the
// binary compiled with it (a file from another compile, even of the same model, is refused),
// not to its content. Every weight was checked finite when the file was packed, so a file
// whose fingerprint matches is not checked again at start-up.
#pragma once

#include "moec/checkpoint/result.h"

#include <cstdint>
#include <string>

namespace moec::checkpoint {

constexpr char kWeightsFileMagic[8] = {'M', 'O', 'E', 'C', 'W', 'T', 'S', '\0'};
// 4: q8 experts may be in panel order too, codes and scales (the manifest's "panels").
// 3: expert float weights may be in panel order (the manifest's "panels", manifest.h).
// 2: q4 scales are signed, f16(m / -8) (quant.h); version 1 files held f16(amax / 7).
constexpr std::uint32_t kWeightsFileVersion = 4;
constexpr std::uint64_t kWeightsFileHeaderBytes = 4096;
constexpr std::size_t kFingerprintChars = 32;

/// The header's fields (the on-disk layout is above; encode/decode do the byte order).
struct WeightsFileHeader {
  std::uint32_t version = kWeightsFileVersion;
  std::uint64_t arena_bytes = 0;
  std::uint64_t file_bytes = 0;
  std::string fingerprint; // kFingerprintChars hex digits
  std::uint32_t abi_version = 0;
};

/// The kWeightsFileHeaderBytes bytes of the header page.
std::string encode_weights_file_header(const WeightsFileHeader &h);

/// Parses and checks the first `available` bytes of the file at `path` (named in messages) of
/// `file_size` bytes against what the manifest expects: magic, version, header size, arena
/// bytes, file size (a truncated or extended file), fingerprint. One-line messages
/// "<path>: <problem>".
Status check_weights_file_header(const unsigned char *bytes, std::uint64_t available,
                                 std::uint64_t file_size, const std::string &path,
                                 std::uint64_t arena_bytes, const std::string &fingerprint);

/// "" when `s` is kFingerprintChars lower-case hex digits, else why not.
std::string fingerprint_problem(const std::string &s);

/// A fresh random fingerprint (std::random_device).
std::string new_fingerprint();

} // namespace moec::checkpoint
