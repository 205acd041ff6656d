// model_folder.cpp — the model folder a binary is given is the one it was compiled for.
//
// The manifest carries the config the code was generated from. At start-up the folder's
// config.json (read by the same library the compiler used) must agree with it on every field
// that changes the numbers, and the tokenizer must fit the model: a folder edited or swapped
// after compiling is refused before minutes of loading, never run as a different model.
#include "driver.h"
#include "moec/checkpoint/config.h"
#include "moec/checkpoint/file.h"
#include "moec/error.h"

#include <sys/stat.h>

namespace moec::driver {

std::string checked_model_dir(const std::string &dir, bool from_flag) {
  if (dir.empty())
    throw Error(from_flag ? "--model: the path is empty"
                          : "the manifest's model_dir is empty; pass --model DIR");
  if (std::string why = checkpoint::why_missing(dir); !why.empty())
    throw Error(dir + ": model folder " + why +
                (from_flag ? "" : " (the folder this binary was compiled from; pass --model DIR)"));
  return dir;
}

void check_model_config(const Manifest &m, const std::string &dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return; // a single .safetensors file: there is no folder config to compare
  const std::string path = dir + (dir.back() == '/' ? "" : "/") + "config.json";
  checkpoint::Result<checkpoint::ModelConfig> file = checkpoint::load_config(path);
  if (!file)
    throw Error(file.error());
  if (std::string diff = checkpoint::config_mismatch(*file, m.config); !diff.empty())
    throw Error(path + ": " + diff);
}

void check_tokenizer_fits(const Tokenizer &tok, const ModelConfig &c, const std::string &path) {
  // Equal, not merely <=: an id the tokenizer lacks cannot be printed, and a piece the model
  // lacks indexes past the embedding; Mixtral's tokenizer and config agree exactly.
  if (tok.vocab_size() != c.vocab_size)
    throw Error(path + ": tokenizer has " + std::to_string(tok.vocab_size()) +
                " pieces but the model's vocab_size is " + std::to_string(c.vocab_size));
  if (tok.bos_id() != c.bos_token_id || tok.eos_id() != c.eos_token_id)
    throw Error(path + ": tokenizer's BOS/EOS ids are " + std::to_string(tok.bos_id()) + "/" +
                std::to_string(tok.eos_id()) + " but the model's bos_token_id/eos_token_id are " +
                std::to_string(c.bos_token_id) + "/" + std::to_string(c.eos_token_id));
}

} // namespace moec::driver
