# lit configuration for moec: every .mlir file under test/ is a test; tools come from the
# build tree and from LLVM 22's bin directory (FileCheck, not, count).
import os
import shutil

import lit.formats
from lit.llvm import llvm_config

config.name = "moec"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moec_obj_root, "test")
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "runtime", "reference",
                   "goldens", "e2e", "Inputs"]

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.moec_tools_dir, append_path=True)

tools = ["moe-opt"]
if os.path.exists(os.path.join(config.moec_tools_dir, "mixtral-compile")):
    tools.append("mixtral-compile")
    config.available_features.add("mixtral-compile")
llvm_config.add_tool_substitutions(tools, [config.moec_tools_dir])
llvm_config.add_tool_substitutions(["not", "count"], [config.llvm_tools_dir])

# ptxas validates the PTX we emit; it comes with the CUDA toolkit (/usr/local/cuda/bin).
ptxas = shutil.which("ptxas") or os.path.join(config.cuda_root, "bin", "ptxas")
if os.path.exists(ptxas):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", ptxas))

# The PTX interpreter behind the CUDA driver API (test/gpu-emu): runs nvptx binaries here.
if config.moec_ptxemu and os.path.exists(config.moec_ptxemu):
    config.available_features.add("ptxemu")
    config.substitutions.append(("%ptxemu", config.moec_ptxemu))

# Python for helper scripts (numpy): the project's venv when tools/setup.sh made one.
import sys
venv_python = os.path.join(config.moec_src_root, ".venv", "bin", "python")
config.substitutions.append(("%moec_python", venv_python if os.path.exists(venv_python) else sys.executable))

# The host's integer dot-product instructions (tests that run vpdpbusd code need them).
try:
    with open("/proc/cpuinfo") as f:
        flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
except OSError:
    flags = []
# Features named host-*: the ISA the host lacks, never a missing prerequisite, so
# test/lit-no-skips.sh lets a test gated on them be UNSUPPORTED even in CI (machines of this
# kind are AVX2-only AMD EPYCs or AVX-512 Xeons).
if "avx_vnni" in flags or ("avx512_vnni" in flags and "avx512vl" in flags):
    config.available_features.add("host-vnni")
if "avx512f" in flags:
    config.available_features.add("host-avx512f")
