//===- mixtral-compile.cpp - checkpoint folder -> inference binary --------===//
//
//   mixtral-compile MODEL_DIR -o OUT [--target cpu] [--max-seq-len N] [--emit=...]
//                   [--pack | --quantize q8|q4]
//   mixtral-compile --tiny -o OUT
//
// Stages: read config.json (+ the weights' storage type) -> build the model in the moe
// dialect (models/) -> run the named pipeline (`moe-opt --moe-cpu-pipeline` runs the same
// one) -> LLVM IR -> object -> link with the runtime. --emit stops after any stage. OUT is
// written by OutputFile.h's rules: a unique temporary renamed into place once complete (a
// device or FIFO is written through, never replaced); nothing is left behind on an error or a
// signal. --pack (implied by --quantize and by an FP8 checkpoint; CPU and GPU) also writes OUT.weights (moec/checkpoint/weights_file.h), streamed from the
// checkpoint before code generation and put in place just before OUT, by the same rules.
//
//===----------------------------------------------------------------------===//

#include "LinkConfig.h"
#include "OutputFile.h"
#include "moec/Models/Checkpoint.h"
#include "moec/Models/Mixtral.h"
#include "moec/Models/MixtralConfig.h"
#include "moec/checkpoint/manifest.h"
#include "moec/checkpoint/fp8.h"
#include "moec/checkpoint/pack.h"
#include "moec/checkpoint/quant.h"
#include "moec/checkpoint/weights_file.h"
#include "moec/Codegen/GPU/Pipelines.h"
#include "moec/Codegen/Pipelines.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/ConvertUTF.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/Signals.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/TargetParser/Triple.h"

#include <chrono>
#include <cstdio>
#include <unistd.h>

using namespace llvm;
using namespace moec;

namespace {

cl::OptionCategory category("mixtral-compile options");

cl::opt<std::string> modelDirArg(cl::Positional, cl::desc("MODEL_DIR"), cl::cat(category));
cl::opt<std::string> outputArg("o", cl::desc("Output file"), cl::value_desc("OUT"),
                               cl::cat(category));
cl::opt<std::string> targetArg("target", cl::desc("Target: cpu | nvptx (CUDA GPUs, see --gpu)"),
                               cl::init("cpu"), cl::cat(category));
cl::opt<std::string> gpuArg("gpu", cl::desc("GPU architecture for --target nvptx (sm_80, sm_90, ...; sm_90a: wgmma GEMMs)"),
                            cl::init("sm_90"), cl::cat(category));
cl::opt<std::string> cpuArg("cpu", cl::desc("CPU to generate code for (default: this host)"),
                            cl::init("host"), cl::cat(category));
cl::opt<int64_t> maxSeqLenArg("max-seq-len",
                              cl::desc("KV-cache positions (default: min(max_position_embeddings, 4096))"),
                              cl::init(0), cl::cat(category));
enum class Emit { MLIR, LLVM, PTX, Obj, Exe };
cl::opt<Emit> emitArg("emit", cl::desc("Stop after a stage and write it to OUT"),
                      cl::values(clEnumValN(Emit::MLIR, "mlir", "the model in the moe dialect"),
                                 clEnumValN(Emit::LLVM, "llvm", "LLVM IR"),
                                 clEnumValN(Emit::PTX, "ptx", "the kernels' PTX (--target nvptx)"),
                                 clEnumValN(Emit::Obj, "obj", "the x86-64 object"),
                                 clEnumValN(Emit::Exe, "exe", "the inference binary (default)")),
                      cl::init(Emit::Exe), cl::cat(category));
cl::opt<bool> tinyArg("tiny",
                      cl::desc("Compile the built-in tiny model (random weights written to OUT.model/)"),
                      cl::cat(category));
cl::opt<uint64_t> seedArg("seed", cl::desc("Seed of the built-in model's weights"), cl::init(1),
                          cl::cat(category));
cl::opt<std::string> tinyDtypeArg("tiny-dtype", cl::desc("Weight type of the built-in model: f32|bf16|f16"),
                                  cl::init("bf16"), cl::cat(category));
cl::opt<std::string> tokenizerArg("tokenizer",
                                  cl::desc("tokenizer.model for the built-in model"),
                                  cl::init(MOEC_TOKENIZER_MODEL), cl::cat(category));
cl::opt<bool> inspectArg("inspect",
                         cl::desc("Print MODEL_DIR's config, parameter counts, bytes on disk and "
                                  "the memory a run needs, then exit"),
                         cl::cat(category));
cl::opt<bool> allowUnusedArg("allow-unused-tensors",
                             cl::desc("Compile even if the checkpoint holds tensors the model "
                                      "does not read (biases, stray names)"),
                             cl::cat(category));
cl::opt<bool> packArg("pack",
                      cl::desc("Also write OUT.weights: the weights laid out as the kernels read "
                               "them; OUT maps it at start-up instead of copying the checkpoint"),
                      cl::cat(category));
cl::opt<std::string> quantizeArg(
    "quantize",
    cl::desc("Store the expert and attention weights quantized: q8 (8.5 bits/weight) or q4 "
             "(4.5); implies --pack"),
    cl::value_desc("q8|q4"), cl::cat(category));
cl::opt<bool> int8ActivationsArg(
    "int8-activations",
    cl::desc("With --quantize: multiply the weights by activations rounded to int8 per 32 "
             "(integer dot products: AVX2, or AVX-VNNI / AVX512-VNNI where --cpu has them). "
             "The default for q4 (=false: f32 activations); q8 keeps f32 ones unless given"),
    cl::cat(category));
// q4's int8 kernels on 8 groups per step (CpuPipelineOptions::q4Octets, the default);
// =false keeps the 2-group kernels of earlier builds (other bits), for benchmarking.
cl::opt<bool> q4OctetsArg("q4-octets",
                          cl::desc("q4 int8 kernels: 8 groups per step (default; =false: 2)"),
                          cl::init(true), cl::Hidden, cl::cat(category));
// Gate/up GEMMs with SwiGLU in their epilogue (CpuPipelineOptions::gemmEpilogues): same bits,
// off by default until it is faster (0.87-0.96x the unfused GEMMs at 128 rows, level at 32).
cl::opt<bool> gemmEpiloguesArg("gemm-epilogues",
                               cl::desc("CPU: an expert's gate/up GEMMs as one GEMM with SwiGLU "
                                        "in its epilogue (same bits; default off)"),
                               cl::init(false), cl::Hidden, cl::cat(category));
// bf16 panels widened once per panel for the GEMM (CpuPipelineOptions::gemmWidenPanels):
// same bits; by default on Zen 1 only, =true / =false to choose.
cl::opt<bool> gemmWidenPanelsArg("gemm-widen-panels",
                                 cl::desc("CPU: bf16 weights in panel order widened once per "
                                          "panel for the GEMM (same bits; default: on Zen 1)"),
                                 cl::Hidden, cl::cat(category));
cl::opt<std::string> linkerArg("linker", cl::desc("C++ compiler driver used to link OUT"),
                               cl::init(MOEC_DEFAULT_LINKER), cl::cat(category));

/// Prints "mixtral-compile: error: <message>" and returns the exit code.
int fail(const Twine &message) {
  WithColor::error(errs(), "mixtral-compile") << message << "\n";
  return 1;
}

/// Flushes stdout and reports a failed write (a full disk, a closed pipe with SIGPIPE ignored).
Error checkStdout() {
  outs().flush();
  if (!outs().has_error())
    return Error::success();
  std::error_code ec = outs().error();
  outs().clear_error(); // reported here, not again by raw_fd_ostream at exit
  return createStringError(ec, "standard output: cannot write: %s", ec.message().c_str());
}

/// Stage messages with elapsed time, on a terminal only: logs and pipes stay clean.
class Progress {
public:
  explicit Progress(int stages) : stages(stages), enabled(sys::Process::StandardErrIsDisplayed()) {
    start = std::chrono::steady_clock::now();
  }
  void stage(const Twine &what) {
    if (!enabled)
      return;
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    errs() << formatv("[{0}/{1}] {2,6:f1}s  ", ++current, stages, seconds) << what << "\n";
  }

private:
  int stages, current = 0;
  bool enabled;
  std::chrono::steady_clock::time_point start;
};

std::string humanBytes(double bytes) {
  const char *units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) {
    bytes /= 1000;
    ++u;
  }
  return formatv("{0:f2} {1}", bytes, units[u]).str();
}

std::string humanCount(double n) {
  const char *units[] = {"", " K", " M", " B"};
  int u = 0;
  while (n >= 1000 && u < 3) {
    n /= 1000;
    ++u;
  }
  return formatv("{0:f2}{1}", n, units[u]).str();
}

std::string shortDouble(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", v);
  return buffer;
}

/// The weights' format: --quantize q8|q4, or f8e4m3 for an FP8 checkpoint (config.json's
/// quantization_config, whose unapplied parts are noted on stderr). None otherwise.
Expected<QuantFormat> requestedQuant(StringRef modelDir, bool printNote) {
  std::optional<QuantFormat> quant = QuantFormat::None;
  if (quantizeArg.getNumOccurrences()) {
    quant = parse_quant_format(quantizeArg);
    if (!quant || *quant == QuantFormat::F8E4M3)
      return createStringError(inconvertibleErrorCode(),
                               "--quantize must be q8 or q4, not '%s'", quantizeArg.c_str());
  }
  SmallString<256> configPath(modelDir);
  sys::path::append(configPath, "config.json");
  if (modelDir.empty() || !sys::fs::exists(configPath))
    return *quant; // the usual flow reports a missing config.json
  checkpoint::Result<std::optional<checkpoint::Fp8Config>> fp8 =
      checkpoint::load_quantization_config(configPath.str().str());
  if (!fp8)
    return createStringError(inconvertibleErrorCode(), "%s", fp8.error().c_str());
  if (!*fp8)
    return *quant;
  if (*quant != QuantFormat::None)
    return createStringError(inconvertibleErrorCode(),
                             "--quantize %s: %s is an FP8 checkpoint (quantization_config %s); "
                             "its weights are used as they are, drop --quantize",
                             quantizeArg.c_str(), modelDir.str().c_str(), (**fp8).method.c_str());
  if (printNote && !(**fp8).note.empty())
    WithColor::note(errs(), "mixtral-compile") << configPath << ": " << (**fp8).note << "\n";
  return QuantFormat::F8E4M3;
}

/// --inspect's lines on the weights' memory for each storage choice.
void inspectFormats(const MixtralConfig &c, WeightType dtype, QuantFormat checkpointQuant) {
  auto bitsPerWeight = [&](const WeightLayout &l) {
    int64_t bytes = 0, elements = 0;
    for (const ArenaTensor &t : l.tensors)
      if (t.quantized()) {
        bytes += t.bytes + t.scaleBytes;
        int64_t n = 1;
        for (int64_t d : t.shape)
          n *= d;
        elements += n;
      }
    return elements ? 8.0 * double(bytes) / double(elements) : 0.0;
  };
  const double params = double(checkpoint::total_parameters(c));
  // What the quantized tensors meet by default (--int8-activations[=false] changes it on
  // the CPU; the GPU kernels dequantise in registers and keep f32 activations).
  auto activations = [](QuantFormat q) -> StringRef {
    if (targetArg == "nvptx")
      return "f32 activations (bf16 in the tensor-core tiles)";
    switch (q) {
    case QuantFormat::Q4:
      return "int8 activations, =false: f32";
    case QuantFormat::Q8:
      return "f32 activations, --int8-activations: int8";
    default:
      return "f32 activations";
    }
  };
  auto line = [&](StringRef label, QuantFormat q) {
    WeightLayout l = WeightLayout::build(c, WeightFormat{dtype, q});
    std::string detail =
        q == QuantFormat::None
            ? std::string(dtype_name(dtype)) + " throughout"
            : formatv("{0} {1:f2} bits/weight, the rest {2}; {3}",
                      l.keptUnquantized.empty() ? "experts and attention" : "quantized tensors",
                      bitsPerWeight(l), dtype_name(dtype), activations(q)).str();
    outs() << formatv("             {0,-22} {1,9}  {2:f2} bits/parameter ({3})\n", label,
                      humanBytes(double(l.totalBytes)), 8.0 * double(l.totalBytes) / params,
                      detail);
    if (!l.keptUnquantized.empty()) { // the same tensors in every layer: name layer 0's
      std::vector<std::string> names;
      for (StringRef name : l.keptUnquantized)
        if (name.consume_front("layers.0."))
          names.push_back(name.str());
      outs() << "             (a K not a multiple of 32; the experts go together; kept "
             << dtype_name(dtype) << ": "
             << join(names, ", ") << " of every layer)\n";
    }
  };
  outs() << "weights as:\n";
  if (checkpointQuant == QuantFormat::F8E4M3) {
    line("FP8 (as on disk)", QuantFormat::F8E4M3);
    return;
  }
  line(std::string(dtype_name(dtype)) + " (as on disk)", QuantFormat::None);
  line("--quantize q8", QuantFormat::Q8);
  line("--quantize q4", QuantFormat::Q4);
}

/// --inspect: what a checkpoint is and what running it costs.
int inspect(StringRef modelDir) {
  SmallString<256> configPath(modelDir);
  sys::path::append(configPath, "config.json");
  Expected<MixtralConfig> parsed = loadMixtralConfig(configPath);
  if (!parsed)
    return fail(toString(parsed.takeError()));
  const MixtralConfig &c = *parsed;
  Expected<checkpoint::CheckpointHeaders> headers = readCheckpointHeaders(modelDir);
  if (!headers)
    return fail(toString(headers.takeError()));
  std::optional<CheckpointSummary> summary = summarizeCheckpoint(*headers);
  int64_t maxSeqLen = maxSeqLenArg > 0 ? int64_t(maxSeqLenArg)
                                       : std::min<int64_t>(c.max_position_embeddings, 4096);
  outs() << "model:       " << modelDir << "\n";
  outs() << formatv("config:      {0} layers, hidden {1}, intermediate {2}, heads {3}/{4} "
                    "(head_dim {5}), {6} experts top-{7}, vocab {8}\n",
                    c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads,
                    c.head_dim, c.num_local_experts, c.num_experts_per_tok, c.vocab_size);
  outs() << formatv("             rope_theta {0}, rms_norm_eps {1}, max_position_embeddings {2}, "
                    "sliding_window {3}, tie_word_embeddings {4}\n",
                    shortDouble(c.rope_theta), shortDouble(c.rms_norm_eps), c.max_position_embeddings,
                    c.sliding_window ? std::to_string(*c.sliding_window) : std::string("none"),
                    c.tie_word_embeddings ? "true" : "false");
  outs() << formatv("parameters:  {0} total, {1} read per token (attention, router, {2} "
                    "experts, lm_head)\n",
                    humanCount(checkpoint::total_parameters(c)),
                    humanCount(checkpoint::active_parameters(c)),
                    c.num_experts_per_tok);
  int64_t diskBytes = 0;
  std::string byType;
  for (auto &[dtype, bytes] : summary->bytesByDtype) {
    diskBytes += bytes;
    byType += (byType.empty() ? "" : ", ") + dtype + " " + humanBytes(bytes);
  }
  outs() << formatv("on disk:     {0} in {1} file(s), {2} tensors ({3})\n", humanBytes(diskBytes),
                    summary->files.size(), summary->tensorCount, byType);
  Expected<WeightType> dtype = detectWeightType(*headers);
  if (!dtype)
    return fail(toString(dtype.takeError()));
  Expected<QuantFormat> quant = requestedQuant(modelDir, /*printNote=*/false);
  if (!quant)
    return fail(toString(quant.takeError()));
  int64_t weightBytes = WeightLayout::build(c, WeightFormat{*dtype, *quant}).totalBytes;
  int64_t kvBytes = kvCacheBytes(c, maxSeqLen);
  outs() << formatv("memory:      {0} weights ({1}) + {2} KV cache (f32, {3} positions) = {4}\n",
                    humanBytes(weightBytes),
                    *quant == QuantFormat::None ? std::string(dtype_name(*dtype))
                                                : std::string(quant_format_name(*quant)) + " + " +
                                                      dtype_name(*dtype),
                    humanBytes(kvBytes), maxSeqLen, humanBytes(weightBytes + kvBytes));
  inspectFormats(c, *dtype, *quant);
  if (Error e = checkStdout())
    return fail(toString(std::move(e)));
  return 0;
}

Error writeText(StringRef path, function_ref<void(raw_ostream &)> write) {
  if (path == "-") {
    write(outs());
    return checkStdout();
  }
  Expected<std::unique_ptr<OutputFile>> out = OutputFile::create(path);
  if (!out)
    return out.takeError();
  raw_fd_ostream os((*out)->tempFD(), /*shouldClose=*/false);
  write(os);
  os.flush();
  if (os.has_error()) {
    std::error_code ec = os.error();
    os.clear_error();
    return createStringError(ec, "%s: cannot write: %s", path.str().c_str(), ec.message().c_str());
  }
  return (*out)->commit();
}

/// Links object + runtime into an executable with the system toolchain; the caller commits it.
Expected<std::unique_ptr<OutputFile>> link(StringRef object, StringRef output) {
  ErrorOr<std::string> driver = sys::findProgramByName(linkerArg);
  if (!driver)
    return createStringError(driver.getError(), "cannot find the linker driver '%s'",
                             linkerArg.c_str());
  for (StringRef input : {StringRef(MOEC_RUNTIME_LIBRARY), StringRef(MOEC_RUNTIME_MAIN_OBJECT)})
    if (!sys::fs::exists(input))
      return createStringError(inconvertibleErrorCode(),
                               "runtime file %s is missing; build the runtime first",
                               input.str().c_str());
  Expected<std::unique_ptr<OutputFile>> out = OutputFile::create(output);
  if (!out)
    return out.takeError();
  // $ORIGIN/lib first: on a machine without this toolchain (a GPU box with only the NVIDIA
  // driver), the two shared libraries OUT needs beyond the C/C++ runtime (libsentencepiece,
  // libomp) can sit in lib/ beside OUT.
  std::string rpath = std::string("-Wl,-rpath,$ORIGIN/lib:") + MOEC_LLVM_LIBRARY_DIR;
  std::string libdir = std::string("-L") + MOEC_LLVM_LIBRARY_DIR;
  SmallVector<std::string> args = {*driver, object.str(), MOEC_RUNTIME_MAIN_OBJECT,
                                   MOEC_RUNTIME_LIBRARY, "-o", (*out)->tempPath().str(), libdir,
                                   rpath};
  SmallVector<StringRef> extra;
  StringRef(MOEC_RUNTIME_LINK_LIBS).split(extra, ' ', -1, false);
  for (StringRef e : extra)
    args.push_back(e.str());
  // In a process group of its own, so that a signal that ends us ends the driver and the
  // linker it runs before our temporaries are removed (OutputFile.h).
  std::string message;
  int rc = runChildGroup(args, message);
  if (rc < 0)
    return createStringError(inconvertibleErrorCode(), "linking %s failed (%s)",
                             output.str().c_str(), message.c_str());
  if (rc != 0)
    return createStringError(inconvertibleErrorCode(), "linking %s failed (%s exited with %d)",
                             output.str().c_str(), driver->c_str(), rc);
  return std::move(*out);
}

/// --pack: OUT.weights for the manifest `options` describe, streamed from the checkpoint at
/// `modelDir` into a temporary beside OUT; the caller commits it just before OUT.
Expected<std::unique_ptr<OutputFile>> packWeights(const MixtralConfig &config, const BuildOptions &options,
                                           StringRef modelDir, StringRef path) {
  Expected<checkpoint::CheckpointHeaders> headers = readCheckpointHeaders(modelDir);
  if (!headers)
    return headers.takeError();
  checkpoint::Result<checkpoint::Manifest> manifest = checkpoint::parse_manifest(
      buildManifest(config, WeightLayout::build(config, options.format()),
                    options));
  if (!manifest)
    return createStringError(inconvertibleErrorCode(), "internal error: %s",
                             manifest.error().c_str());
  Expected<std::unique_ptr<OutputFile>> out = OutputFile::create(path);
  if (!out)
    return out.takeError();
  checkpoint::PackOptions popt;
  popt.progress = sys::Process::StandardErrIsDisplayed();
  checkpoint::Result<checkpoint::PackStats> stats =
      checkpoint::pack_weights(*manifest, *headers, (*out)->tempFD(), path.str(), popt);
  if (!stats)
    return createStringError(inconvertibleErrorCode(), "%s", stats.error().c_str());
  return std::move(*out);
}

/// --pack's refusals, before any work: the file goes beside OUT (a CPU binary maps it, a GPU
/// binary uploads it to the device).
Error checkPackFlags(bool pack) {
  auto fail = [](const Twine &message) {
    return make_error<StringError>(message, inconvertibleErrorCode());
  };
  if (!pack)
    return Error::success();
  if (emitArg != Emit::Exe) // earlier stages name the file in the manifest but write none
    return Error::success();
  sys::fs::file_status st;
  if (!sys::fs::status(outputArg, st) && st.type() != sys::fs::file_type::regular_file)
    return fail("--pack writes OUT.weights beside OUT, so -o must name a file, not '" +
                outputArg + "'");
  return OutputFile::check(outputArg + ".weights");
}

/// The processor names LLVM's backend for `triple` knows (its subtarget table).
std::vector<std::string> processorNames(const char *triple) {
  std::string error;
  Triple t(triple);
  const Target *target = TargetRegistry::lookupTarget(t, error);
  if (!target)
    return {};
  std::unique_ptr<MCSubtargetInfo> info(target->createMCSubtargetInfo(t, "", ""));
  std::vector<std::string> names;
  if (info)
    for (const SubtargetSubTypeKV &kv : info->getAllProcessorDescriptions())
      names.push_back(kv.Key);
  return names;
}

/// --gpu: sm_80 or newer (the kernels use bf16 mma.sync and ldmatrix, which sm_80 introduced),
/// and known to LLVM's NVPTX backend (sm_80, sm_86, sm_89, sm_90, sm_90a, sm_100, ...).
std::vector<std::string> supportedGpus() {
  LLVMInitializeNVPTXTargetInfo();
  LLVMInitializeNVPTXTargetMC();
  std::vector<std::pair<unsigned, std::string>> found; // (80, "sm_80"): sorted by number
  for (const std::string &name : processorNames("nvptx64-nvidia-cuda")) {
    unsigned sm = 0;
    if (StringRef(name).starts_with("sm_") &&
        !StringRef(name).drop_front(3).take_while(isDigit).getAsInteger(10, sm) && sm >= 80)
      found.emplace_back(sm, name);
  }
  llvm::sort(found);
  std::vector<std::string> out;
  for (auto &entry : found)
    out.push_back(entry.second);
  return out;
}

/// --cpu: "host" or a CPU name of LLVM's x86-64 backend.
std::vector<std::string> knownCpus() {
  LLVMInitializeX86TargetInfo();
  LLVMInitializeX86TargetMC();
  return processorNames("x86_64-unknown-linux-gnu");
}

/// The flags that name a target, checked before any work: LLVM would crash on an unknown
/// --gpu or --cpu deep in code generation, and a flag that does not apply is never ignored.
Error checkTargetFlags(bool nvptx) {
  auto fail = [](const Twine &message) {
    return make_error<StringError>(message, inconvertibleErrorCode());
  };
  if (gpuArg.getNumOccurrences() && !nvptx)
    return fail("--gpu applies to --target nvptx only; add --target nvptx or drop --gpu");
  if (cpuArg.getNumOccurrences() && nvptx)
    return fail("--cpu applies to --target cpu only (a GPU binary's host code is built for "
                "x86-64-v2)");
  if (nvptx) {
    std::vector<std::string> gpus = supportedGpus();
    if (!llvm::is_contained(gpus, gpuArg))
      return fail("--gpu " + gpuArg + " is not supported: the kernels need sm_80 or newer; " +
                  "one of " + join(gpus, ", "));
  }
  if (!nvptx && cpuArg != "host" && !llvm::is_contained(knownCpus(), cpuArg))
    return fail("--cpu " + cpuArg + " is not a CPU LLVM's x86-64 backend knows (e.g. x86-64-v3, " +
                "skylake-avx512, znver4; --cpu help lists them; default: host)");
  if (maxSeqLenArg.getNumOccurrences() && maxSeqLenArg <= 0)
    return fail("--max-seq-len must be at least 1, got " + Twine(int64_t(maxSeqLenArg)) +
                " (leave it out for min(max_position_embeddings, 4096))");
  return Error::success();
}

/// The marker --tiny leaves in OUT.model/: a folder holding it is ours to overwrite.
constexpr const char *kTinyMarker = ".mixtral-compile-tiny";

/// Makes OUT.model/ ready for --tiny's files, refusing any folder an earlier --tiny did not
/// create: a real checkpoint there (or behind a symlink) would be overwritten with random
/// weights. The files we write are removed first, so a symlink planted among them is
/// replaced, never followed.
Error prepareTinyFolder(StringRef dir) {
  auto refuse = [&](const Twine &why) {
    return make_error<StringError>(dir + ": " + why, inconvertibleErrorCode());
  };
  SmallString<256> marker(dir);
  sys::path::append(marker, kTinyMarker);
  sys::fs::file_status st;
  std::error_code ec = sys::fs::status(dir, st, /*follow=*/false);
  if (ec == std::errc::no_such_file_or_directory) {
    if ((ec = sys::fs::create_directory(dir, /*IgnoreExisting=*/false)))
      return refuse("cannot create directory: " + ec.message());
    std::error_code wec;
    raw_fd_ostream os(marker, wec, sys::fs::OF_Text);
    if (wec)
      return refuse("cannot write: " + wec.message());
    os << "Written by mixtral-compile --tiny: the next --tiny run with the same -o overwrites "
          "this folder.\n";
    os.close();
    if (os.has_error()) {
      wec = os.error();
      os.clear_error();
      return refuse("cannot write: " + wec.message());
    }
    return Error::success();
  }
  if (ec)
    return refuse(ec.message());
  if (st.type() == sys::fs::file_type::symlink_file)
    return refuse("is a symbolic link; --tiny writes only into a folder it created "
                  "(remove it or choose another -o)");
  sys::fs::file_status m;
  if (st.type() != sys::fs::file_type::directory_file ||
      sys::fs::status(marker, m, /*follow=*/false) ||
      m.type() != sys::fs::file_type::regular_file)
    return refuse(Twine("exists and was not created by mixtral-compile --tiny (no ") +
                  kTinyMarker + "); refusing to overwrite it (remove it or choose another -o)");
  for (const char *name : {"model.safetensors", "config.json", "tokenizer.model"}) {
    SmallString<256> file(dir);
    sys::path::append(file, name);
    if ((ec = sys::fs::remove(file)))
      return refuse("cannot replace " + Twine(name) + ": " + ec.message());
  }
  return Error::success();
}

int compile() {
  if (cpuArg == "help") {
    for (const std::string &name : knownCpus())
      outs() << name << "\n";
    if (Error e = checkStdout())
      return fail(toString(std::move(e)));
    return 0;
  }
  if (inspectArg) {
    if (modelDirArg.empty())
      return fail("--inspect needs MODEL_DIR");
    return inspect(modelDirArg);
  }
  if (outputArg.empty())
    return fail("no output file: pass -o OUT");
  if (outputArg == "-" && (emitArg == Emit::Obj || emitArg == Emit::Exe))
    return fail(Twine("-o -: ") + (emitArg == Emit::Obj ? "an object file" : "an executable") +
                " is not written to standard output; name a file");
  if (outputArg == "-" && tinyArg)
    return fail("-o -: --tiny writes its model to OUT.model/; name a file");
  if (outputArg != "-") // fail before minutes of compiling, not at the last step
    if (Error e = OutputFile::check(outputArg))
      return fail(toString(std::move(e)));
  const bool nvptx = targetArg == "nvptx";
  if (targetArg != "cpu" && !nvptx)
    return fail("--target must be cpu or nvptx, not '" + targetArg + "'");
  if (emitArg == Emit::PTX && !nvptx)
    return fail("--emit=ptx needs --target nvptx");
  if (Error e = checkTargetFlags(nvptx))
    return fail(toString(std::move(e)));
  Expected<QuantFormat> quant = requestedQuant(tinyArg ? StringRef() : StringRef(modelDirArg),
                                               /*printNote=*/true);
  if (!quant)
    return fail(toString(quant.takeError()));
  // Quantized weights exist only in the packed file.
  const bool pack = packArg || *quant != QuantFormat::None;
  if (Error e = checkPackFlags(pack))
    return fail(toString(std::move(e)));
  // Given or not: q4 takes int8 activations unless told otherwise, q8 only when told.
  const bool int8Given = int8ActivationsArg.getNumOccurrences() > 0;
  if (int8Given && int8ActivationsArg && *quant != QuantFormat::Q8 && *quant != QuantFormat::Q4)
    return fail("--int8-activations needs --quantize q8 or q4 (it rounds the activations "
                "that meet integer weights)");
  if (int8ActivationsArg && nvptx) // the GPU kernels keep f32 activations (bf16 in the mma tiles)
    return fail("--int8-activations is for --target cpu: the GPU kernels dequantise q8/q4 "
                "weights in registers and keep the activations in f32 (bf16 in the "
                "tensor-core tiles)");

  const bool writePacked = pack && emitArg == Emit::Exe;
  Progress progress((emitArg == Emit::Exe ? 5 : emitArg == Emit::Obj ? 4 : emitArg == Emit::LLVM ? 3 : 2) +
                    (writePacked ? 1 : 0));
  std::string modelDir = modelDirArg;
  MixtralConfig config;
  WeightType dtype = WeightType::F32;
  if (tinyArg) {
    if (!modelDir.empty())
      return fail("--tiny builds its own model; do not also pass MODEL_DIR");
    modelDir = outputArg + ".model";
    progress.stage("writing the built-in model to " + modelDir);
    config = tinyMixtralConfig();
    if (tinyDtypeArg == "f32")
      dtype = WeightType::F32;
    else if (tinyDtypeArg == "bf16")
      dtype = WeightType::BF16;
    else if (tinyDtypeArg == "f16")
      dtype = WeightType::F16;
    else
      return fail("--tiny-dtype must be f32, bf16 or f16, not '" + tinyDtypeArg + "'");
    if (Error e = prepareTinyFolder(modelDir))
      return fail(toString(std::move(e)));
    if (Error e = writeRandomCheckpoint(modelDir, config, dtype, seedArg))
      return fail(toString(std::move(e)));
    SmallString<256> tokenizer(modelDir);
    sys::path::append(tokenizer, "tokenizer.model");
    if (tokenizerArg.empty() || !sys::fs::exists(tokenizerArg))
      return fail("the built-in model needs the Mixtral tokenizer; pass --tokenizer "
                  "PATH/tokenizer.model (tools/setup.sh finds it in mistral-common)");
    if (std::error_code ec = sys::fs::copy_file(tokenizerArg, tokenizer))
      return fail(tokenizer + ": cannot write: " + ec.message());
  } else {
    if (modelDir.empty())
      return fail("no model: pass MODEL_DIR (a Hugging Face checkpoint folder) or --tiny");
    if (!sys::fs::exists(modelDir))
      return fail(modelDir + ": model folder does not exist");
    if (!sys::fs::is_directory(modelDir))
      return fail(modelDir + ": not a directory");
    progress.stage("reading " + modelDir);
    SmallString<256> configPath(modelDir);
    sys::path::append(configPath, "config.json");
    Expected<MixtralConfig> parsed = loadMixtralConfig(configPath);
    if (!parsed)
      return fail(toString(parsed.takeError()));
    config = *parsed;
    // Every header, so that the model built is the model the checkpoint describes.
    Expected<checkpoint::CheckpointHeaders> headers = readCheckpointHeaders(modelDir);
    if (!headers)
      return fail(toString(headers.takeError()));
    Expected<WeightType> detected = detectWeightType(*headers);
    if (!detected)
      return fail(toString(detected.takeError()));
    dtype = *detected;
    if (Error e = checkCheckpointMatchesConfig(*headers, config, WeightFormat{dtype, *quant},
                                               allowUnusedArg))
      return fail(toString(std::move(e)));
  }
  SmallString<256> absoluteDir(modelDir);
  sys::fs::make_absolute(absoluteDir);
  // The binary finds its model through the manifest, which is JSON: UTF-8 only.
  const auto *utf8 = reinterpret_cast<const UTF8 *>(absoluteDir.data());
  if (!isLegalUTF8String(&utf8, utf8 + absoluteDir.size()))
    return fail("the model folder's path is not valid UTF-8; the compiled binary records it "
                "in its manifest (JSON), so rename the folder or move it to a UTF-8 path");

  BuildOptions options;
  options.target = targetArg;
  options.dtype = dtype;
  options.quantize = *quant;
  options.modelDir = std::string(absoluteDir);
  options.maxSeqLen = maxSeqLenArg.getNumOccurrences()
                          ? int64_t(maxSeqLenArg)
                          : std::min<int64_t>(config.max_position_embeddings, 4096);
  if (options.maxSeqLen > config.max_position_embeddings)
    return fail(formatv("--max-seq-len {0} exceeds the model's max_position_embeddings ({1})",
                        options.maxSeqLen, config.max_position_embeddings));
  // The packed file: named in the manifest (the binary finds it beside itself), with a
  // fingerprint drawn for this compile. Stages before the executable name it but write none.
  std::unique_ptr<OutputFile> packed;
  if (pack) {
    options.weightsFile = sys::path::filename(outputArg).str() + ".weights";
    options.weightsFingerprint = writePacked ? checkpoint::new_fingerprint()
                                             : std::string(checkpoint::kFingerprintChars, '0');
  }
  // On a CPU the expert weights are stored as the GEMM reads them (#moe.panels): so in the
  // packed file, or permuted by the loader as it copies the checkpoint into the arena (the
  // manifest's "panels" tells it which tensors): the same bits either way.
  if (!nvptx)
    std::tie(options.panelCols, options.panelLanes) = mlir::moe::gemmPanelShape(cpuArg);
  // q8 on f32 activations reads its experts in panel order too (moe-cpu-vectorize-quant-matmul:
  // the GEMM dequantises a stored panel without transposes, the GEMV reads it as stored);
  // int8 activations keep the row-major layout their dot products read.
  options.q8Panels = !nvptx && !(int8Given && int8ActivationsArg);
  if (writePacked) {
    progress.stage("packing " + outputArg + ".weights");
    Expected<std::unique_ptr<OutputFile>> out =
        packWeights(config, options, modelDir, outputArg + ".weights");
    if (!out)
      return fail(toString(out.takeError()));
    packed = std::move(*out);
  }

  progress.stage("building the model in the moe dialect");
  mlir::MLIRContext context;
  mlir::OwningOpRef<mlir::ModuleOp> module = buildMixtralModule(context, config, options);
  if (failed(mlir::verify(*module)))
    return fail("internal error: the model builder produced invalid IR");
  if (emitArg == Emit::MLIR) {
    if (Error e = writeText(outputArg, [&](raw_ostream &os) { module->print(os); }))
      return fail(toString(std::move(e)));
    return 0;
  }

  // Lower: the named pipeline of the target, exactly what `moe-opt --moe-<target>-pipeline` runs.
  mlir::DialectRegistry registry;
  mlir::moe::registerCodegenDialects(registry);
  if (nvptx)
    mlir::moe::gpu::registerGpuCodegenDialects(registry);
  context.appendDialectRegistry(registry);
  mlir::PassManager pm = mlir::PassManager::on<mlir::ModuleOp>(&context);
  if (failed(mlir::applyPassManagerCLOptions(pm)))
    return fail("invalid pass manager options");
  StringRef pipelineName = nvptx ? "moe-gpu-pipeline" : "moe-cpu-pipeline";
  if (nvptx) {
    mlir::moe::gpu::GpuPipelineOptions pipeline;
    pipeline.chip = gpuArg;
    mlir::moe::gpu::buildGpuPipeline(pm, pipeline);
  } else {
    mlir::moe::CpuPipelineOptions pipeline;
    pipeline.cpu = cpuArg;
    pipeline.int8Activations = !int8Given           ? mlir::moe::Int8Activations::Q4
                               : int8ActivationsArg ? mlir::moe::Int8Activations::All
                                                    : mlir::moe::Int8Activations::None;
    pipeline.q4Octets = q4OctetsArg;
    pipeline.gemmEpilogues = gemmEpiloguesArg;
    if (gemmWidenPanelsArg.getNumOccurrences())
      pipeline.gemmWidenPanels = gemmWidenPanelsArg ? mlir::moe::PanelWidening::Widen
                                                    : mlir::moe::PanelWidening::InPlace;
    mlir::moe::buildCpuPipeline(pm, pipeline);
  }
  progress.stage("running " + pipelineName + (nvptx ? " (" + gpuArg + ")" : std::string()));
  if (failed(pm.run(*module)))
    return fail("the " + pipelineName + " failed (see the diagnostics above)");

  std::string error;
  // The text is made in memory first (it holds no weights): a stage that fails writes nothing.
  auto emitText = [&](function_ref<LogicalResult(raw_ostream &)> write) {
    std::string text;
    raw_string_ostream os(text);
    if (failed(write(os)))
      return fail(error);
    if (Error e = writeText(outputArg, [&](raw_ostream &out) { out << text; }))
      return fail(toString(std::move(e)));
    return 0;
  };
  if (emitArg == Emit::PTX)
    return emitText([&](raw_ostream &os) { return mlir::moe::gpu::writePTX(*module, os, error); });
  if (emitArg == Emit::LLVM)
    return emitText([&](raw_ostream &os) { return mlir::moe::emitLLVMIR(*module, os, error); });

  progress.stage(nvptx ? "generating host code" : "generating machine code");
  // GPU host code only launches kernels: a baseline x86-64 so OUT runs on any GPU server.
  StringRef hostCpu = nvptx ? StringRef("x86-64-v2") : StringRef(cpuArg);
  if (emitArg == Emit::Obj) {
    Expected<std::unique_ptr<OutputFile>> object = OutputFile::create(outputArg);
    if (!object)
      return fail(toString(object.takeError()));
    if (failed(mlir::moe::emitObjectFile(*module, hostCpu, (*object)->tempPath(), error))) {
      // Messages name OUT, not the temporary the user never asked for.
      for (size_t at; (at = error.find((*object)->tempPath())) != std::string::npos;)
        error.replace(at, (*object)->tempPath().size(), outputArg);
      return fail(error);
    }
    if (Error e = (*object)->commit())
      return fail(toString(std::move(e)));
    return 0;
  }
  // The object is only the link's input: a temporary in the temp directory, removed on every
  // path out (and by LLVM's handlers on a signal).
  SmallString<128> objectModel;
  sys::path::system_temp_directory(/*ErasedOnReboot=*/true, objectModel);
  sys::path::append(objectModel, "mixtral-compile-%%%%%%.o");
  Expected<sys::fs::TempFile> object = sys::fs::TempFile::create(objectModel);
  if (!object)
    return fail(objectModel + ": cannot write: " + toString(object.takeError()));
  scope_exit removeObject([&] { consumeError(object->discard()); });
  if (failed(mlir::moe::emitObjectFile(*module, hostCpu, object->TmpName, error)))
    return fail(error);
  // emitObjectFile's ToolOutputFile unregistered the name when it kept it: register it again.
  sys::RemoveFileOnSignal(object->TmpName);
  progress.stage("linking " + outputArg);
  Expected<std::unique_ptr<OutputFile>> linked = link(object->TmpName, outputArg);
  if (!linked)
    return fail(toString(linked.takeError()));
  // The weights first: a failure between the two renames leaves a new OUT.weights beside the
  // old OUT, which refuses it (fingerprint), never a new OUT without its file.
  if (packed)
    if (Error e = packed->commit())
      return fail(toString(std::move(e)));
  if (Error e = (*linked)->commit())
    return fail(toString(std::move(e)));
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  mlir::registerPassManagerCLOptions();
  mlir::registerMLIRContextCLOptions();
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv,
                              "moec: compile a Mixtral checkpoint into an inference binary\n\n"
                              "  mixtral-compile MODEL_DIR -o OUT [--max-seq-len N] [--pack | --quantize q8|q4]\n"
                              "  mixtral-compile --tiny -o OUT\n");
  return compile();
}
