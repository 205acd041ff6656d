# test/fuzz/env.sh — sourced by build.sh, run.sh and sanitize.sh (needs $root): the compiler,
# the build folder and the tokenizer model they share.
cxx=${CXX:-clang++-22}
build=${BUILD:-$root/build-fuzz}
if [ -z "${MOEC_TOKENIZER_MODEL:-}" ] && [ -x "$root/.venv/bin/python" ]; then
  MOEC_TOKENIZER_MODEL=$("$root/.venv/bin/python" -c \
    "import mistral_common, os; print(os.path.dirname(mistral_common.__file__) + '/data/tokenizer.model.v1')" \
    2>/dev/null || true)
fi
export MOEC_TOKENIZER_MODEL
