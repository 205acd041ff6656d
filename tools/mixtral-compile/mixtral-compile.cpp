//===- mixtral-compile.cpp - checkpoint folder -> inference binary --------===//
//
//   mixtral-compile MODEL_DIR -o OUT [--target cpu] [--max-seq-len N] [--emit=...]
//   mixtral-compile --tiny -o OUT
//
// Stages: read config.json (+ the weights' storage type) -> build the model in the moe
// dialect (models/) -> run the named pipeline (`moe-opt --moe-cpu-pipeline` runs the same
// one) -> LLVM IR -> object -> link with the runtime. --emit stops after any stage. Outputs
// are written to a temporary name and renamed, so a failure never leaves a half-written OUT.
//
//===----------------------------------------------------------------------===//

#include "LinkConfig.h"
#include "moec/Models/Checkpoint.h"
#include "moec/Models/Mixtral.h"
#include "moec/Models/MixtralConfig.h"
#ifdef MOEC_HAS_CODEGEN
#include "moec/Codegen/Pipelines.h"
#endif

#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <unistd.h>

using namespace llvm;
using namespace moec;

namespace {

cl::OptionCategory category("mixtral-compile options");

cl::opt<std::string> modelDirArg(cl::Positional, cl::desc("MODEL_DIR"), cl::cat(category));
cl::opt<std::string> outputArg("o", cl::desc("Output file"), cl::value_desc("OUT"),
                               cl::cat(category));
cl::opt<std::string> targetArg("target", cl::desc("Target: cpu (nvptx is not available yet)"),
                               cl::init("cpu"), cl::cat(category));
cl::opt<std::string> cpuArg("cpu", cl::desc("CPU to generate code for (default: this host)"),
                            cl::init("host"), cl::cat(category));
cl::opt<int64_t> maxSeqLenArg("max-seq-len",
                              cl::desc("KV-cache positions (default: min(max_position_embeddings, 4096))"),
                              cl::init(0), cl::cat(category));
enum class Emit { MLIR, LLVM, Obj, Exe };
cl::opt<Emit> emitArg("emit", cl::desc("Stop after a stage and write it to OUT"),
                      cl::values(clEnumValN(Emit::MLIR, "mlir", "the model in the moe dialect"),
                                 clEnumValN(Emit::LLVM, "llvm", "LLVM IR"),
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
cl::opt<std::string> linkerArg("linker", cl::desc("C++ compiler driver used to link OUT"),
                               cl::init(MOEC_DEFAULT_LINKER), cl::cat(category));

/// Prints "mixtral-compile: error: <message>" and returns the exit code.
int fail(const Twine &message) {
  WithColor::error(errs(), "mixtral-compile") << message << "\n";
  return 1;
}

/// A file written under a temporary name and renamed into place on success.
class AtomicOutput {
public:
  explicit AtomicOutput(StringRef path) : path(path.str()) {
    tmp = (path + ".tmp." + Twine(::getpid())).str();
  }
  ~AtomicOutput() {
    if (!committed)
      sys::fs::remove(tmp);
  }
  StringRef tempPath() const { return tmp; }
  Error commit() {
    if (std::error_code ec = sys::fs::rename(tmp, path))
      return createStringError(ec, "%s: cannot write: %s", path.c_str(), ec.message().c_str());
    committed = true;
    return Error::success();
  }

private:
  std::string path, tmp;
  bool committed = false;
};

Error writeText(StringRef path, function_ref<void(raw_ostream &)> write) {
  if (path == "-") {
    write(outs());
    return Error::success();
  }
  AtomicOutput out(path);
  std::error_code ec;
  {
    raw_fd_ostream os(out.tempPath(), ec);
    if (ec)
      return createStringError(ec, "%s: cannot write: %s", path.str().c_str(), ec.message().c_str());
    write(os);
  }
  return out.commit();
}

/// Links object + runtime into an executable with the system toolchain.
Error link(StringRef object, StringRef output) {
  ErrorOr<std::string> driver = sys::findProgramByName(linkerArg);
  if (!driver)
    return createStringError(driver.getError(), "cannot find the linker driver '%s'",
                             linkerArg.c_str());
  for (StringRef input : {StringRef(MOEC_RUNTIME_LIBRARY), StringRef(MOEC_RUNTIME_MAIN_OBJECT)})
    if (!sys::fs::exists(input))
      return createStringError(inconvertibleErrorCode(),
                               "runtime file %s is missing; build the runtime first",
                               input.str().c_str());
  AtomicOutput out(output);
  std::string rpath = std::string("-Wl,-rpath,") + MOEC_LLVM_LIBRARY_DIR;
  std::string libdir = std::string("-L") + MOEC_LLVM_LIBRARY_DIR;
  SmallVector<std::string> args = {*driver, object.str(), MOEC_RUNTIME_MAIN_OBJECT,
                                   MOEC_RUNTIME_LIBRARY, "-o", out.tempPath().str(), libdir, rpath};
  SmallVector<StringRef> extra;
  StringRef(MOEC_RUNTIME_LINK_LIBS).split(extra, ' ', -1, false);
  for (StringRef e : extra)
    args.push_back(e.str());
  SmallVector<StringRef> argRefs(args.begin(), args.end());
  std::string message;
  int rc = sys::ExecuteAndWait(*driver, argRefs, std::nullopt, {}, 0, 0, &message);
  if (rc != 0)
    return createStringError(inconvertibleErrorCode(), "linking %s failed (%s exited with %d%s%s)",
                             output.str().c_str(), driver->c_str(), rc,
                             message.empty() ? "" : ": ", message.c_str());
  return out.commit();
}

int compile() {
  if (outputArg.empty())
    return fail("no output file: pass -o OUT");
  if (targetArg != "cpu")
    return fail("--target " + targetArg + " is not available yet; use --target cpu");

  std::string modelDir = modelDirArg;
  MixtralConfig config;
  WeightType dtype = WeightType::F32;
  if (tinyArg) {
    if (!modelDir.empty())
      return fail("--tiny builds its own model; do not also pass MODEL_DIR");
    modelDir = outputArg + ".model";
    config = tinyMixtralConfig();
    if (tinyDtypeArg == "f32")
      dtype = WeightType::F32;
    else if (tinyDtypeArg == "bf16")
      dtype = WeightType::BF16;
    else if (tinyDtypeArg == "f16")
      dtype = WeightType::F16;
    else
      return fail("--tiny-dtype must be f32, bf16 or f16, not '" + tinyDtypeArg + "'");
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
    if (!sys::fs::is_directory(modelDir))
      return fail(modelDir + ": not a directory");
    SmallString<256> configPath(modelDir);
    sys::path::append(configPath, "config.json");
    Expected<MixtralConfig> parsed = MixtralConfig::load(configPath);
    if (!parsed)
      return fail(toString(parsed.takeError()));
    config = *parsed;
    Expected<WeightType> detected = detectWeightType(modelDir);
    if (!detected)
      return fail(toString(detected.takeError()));
    dtype = *detected;
  }
  SmallString<256> absoluteDir(modelDir);
  sys::fs::make_absolute(absoluteDir);

  BuildOptions options;
  options.dtype = dtype;
  options.modelDir = std::string(absoluteDir);
  options.maxSeqLen =
      maxSeqLenArg > 0 ? int64_t(maxSeqLenArg) : std::min<int64_t>(config.maxPositionEmbeddings, 4096);
  if (maxSeqLenArg < 0)
    return fail("--max-seq-len must be positive");
  if (options.maxSeqLen > config.maxPositionEmbeddings)
    return fail(formatv("--max-seq-len {0} exceeds the model's max_position_embeddings ({1})",
                        options.maxSeqLen, config.maxPositionEmbeddings));

  mlir::MLIRContext context;
  mlir::OwningOpRef<mlir::ModuleOp> module = buildMixtralModule(context, config, options);
  if (failed(mlir::verify(*module)))
    return fail("internal error: the model builder produced invalid IR");
  if (emitArg == Emit::MLIR) {
    if (Error e = writeText(outputArg, [&](raw_ostream &os) { module->print(os); }))
      return fail(toString(std::move(e)));
    return 0;
  }

#ifdef MOEC_HAS_CODEGEN
  mlir::DialectRegistry registry;
  mlir::moe::registerCodegenDialects(registry);
  context.appendDialectRegistry(registry);
  mlir::PassManager pm = mlir::PassManager::on<mlir::ModuleOp>(&context);
  if (failed(mlir::applyPassManagerCLOptions(pm)))
    return fail("invalid pass manager options");
  mlir::moe::CpuPipelineOptions pipeline;
  pipeline.cpu = cpuArg;
  mlir::moe::buildCpuPipeline(pm, pipeline);
  if (failed(pm.run(*module)))
    return fail("the moe-cpu-pipeline failed (see the diagnostics above)");

  std::string error;
  if (emitArg == Emit::LLVM) {
    if (Error e = writeText(outputArg, [&](raw_ostream &os) {
          if (failed(mlir::moe::emitLLVMIR(*module, os, error)))
            os << "; " << error << "\n";
        }))
      return fail(toString(std::move(e)));
    return error.empty() ? 0 : fail(error);
  }
  AtomicOutput object(emitArg == Emit::Obj ? outputArg : outputArg + ".o");
  if (failed(mlir::moe::emitObjectFile(*module, cpuArg, object.tempPath(), error)))
    return fail(error);
  if (emitArg == Emit::Obj) {
    if (Error e = object.commit())
      return fail(toString(std::move(e)));
    return 0;
  }
  if (Error e = link(object.tempPath(), outputArg))
    return fail(toString(std::move(e)));
  return 0;
#else
  return fail("this build of mixtral-compile has no code generator; only --emit=mlir works");
#endif
}

} // namespace

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  mlir::registerPassManagerCLOptions();
  mlir::registerMLIRContextCLOptions();
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv,
                              "moec: compile a Mixtral checkpoint into an inference binary\n\n"
                              "  mixtral-compile MODEL_DIR -o OUT [--max-seq-len N]\n"
                              "  mixtral-compile --tiny -o OUT\n");
  return compile();
}
