// An output that cannot be written is refused before compiling; a failed compile never leaves
// a half-written OUT (outputs are written to a unique temporary and renamed), never replaces
// what is not a regular file, and never touches a user's OUT.tmp.
// REQUIRES: mixtral-compile
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 -o %t.missing/out 2>&1 | FileCheck %s --check-prefix=NODIR
// RUN: rm -rf %t.dir && mkdir -p %t.dir
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 -o %t.dir 2>&1 | FileCheck %s --check-prefix=ISDIR
// A link that fails (no such linker) leaves neither OUT nor temporaries behind.
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --max-seq-len 16 --linker no-such-linker -o %t.dir/out 2>&1 | FileCheck %s --check-prefix=LINK
// RUN: ls %t.dir | count 0
// An unknown target is an error, not a crash.
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --target bogus -o %t.dir/out 2>&1 | FileCheck %s --check-prefix=TARGET

// NODIR: error: {{.*}}missing/out: cannot write: directory {{.*}}missing does not exist
// ISDIR: error: {{.*}}.dir: cannot write: it is a directory
// LINK: error: cannot find the linker driver 'no-such-linker'
// TARGET: error: --target must be cpu or nvptx, not 'bogus'

// Devices are written through, never replaced: /dev/null takes the text, /dev/full is an error.
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --emit=mlir -o /dev/null
// RUN: test -c /dev/null
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --emit=mlir -o /dev/full 2>&1 | FileCheck %s --check-prefix=FULL
// RUN: test -c /dev/full
// FULL: mixtral-compile: error: /dev/full: cannot write: No space left on device

// A FIFO gets the text and stays a FIFO; /dev/stdout redirected to a file writes that file.
// RUN: rm -f %t.fifo && mkfifo %t.fifo
// RUN: (mixtral-compile %S/../goldens/mixtral_e4k2_f32 --emit=mlir -o %t.fifo &) ; cat %t.fifo > %t.fromfifo
// RUN: test -p %t.fifo
// RUN: FileCheck %s --check-prefix=DASHMLIR --input-file=%t.fromfifo
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --emit=mlir -o /dev/stdout > %t.stdout.mlir
// RUN: FileCheck %s --check-prefix=DASHMLIR --input-file=%t.stdout.mlir

// A write error on stdout is an error, not "LLVM ERROR" at exit.
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --emit=mlir -o - 2>&1 > /dev/full | FileCheck %s --check-prefix=STDOUT
// STDOUT: mixtral-compile: error: standard output: cannot write: No space left on device

// -o - is for text stages only.
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --emit=obj -o - 2>&1 | FileCheck %s --check-prefix=DASHOBJ
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 -o - 2>&1 | FileCheck %s --check-prefix=DASHEXE
// RUN: not mixtral-compile --tiny --emit=mlir -o - 2>&1 | FileCheck %s --check-prefix=DASHTINY
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --emit=mlir -o - | FileCheck %s --check-prefix=DASHMLIR
// DASHOBJ: error: -o -: an object file is not written to standard output; name a file
// DASHEXE: error: -o -: an executable is not written to standard output; name a file
// DASHTINY: error: -o -: --tiny writes its model to OUT.model/; name a file
// DASHMLIR: func.func @moec_prefill

// A user's OUT.tmp survives; the new OUT is complete and no temporary is left.
// RUN: rm -rf %t.keep && mkdir -p %t.keep && echo mine > %t.keep/out.ll.tmp && echo old > %t.keep/out.ll
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --max-seq-len 16 --emit=llvm -o %t.keep/out.ll
// RUN: FileCheck %s --check-prefix=MINE --input-file=%t.keep/out.ll.tmp
// RUN: FileCheck %s --check-prefix=LL --input-file=%t.keep/out.ll
// RUN: ls %t.keep | count 2
// MINE: mine
// LL: define {{.*}}@moec_prefill

// A symlink is followed; the link stays a link. A dangling one is refused.
// RUN: rm -rf %t.link && mkdir -p %t.link/real && echo old > %t.link/real/out.mlir && ln -s real/out.mlir %t.link/out.mlir
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --emit=mlir -o %t.link/out.mlir
// RUN: test -L %t.link/out.mlir
// RUN: FileCheck %s --check-prefix=DASHMLIR --input-file=%t.link/real/out.mlir
// RUN: ln -s nowhere/x %t.link/dangling
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --emit=mlir -o %t.link/dangling 2>&1 | FileCheck %s --check-prefix=DANGLING
// DANGLING: error: {{.*}}dangling: cannot write: it is a dangling symbolic link

// A signal during the link (SIGTERM, SIGINT, Ctrl-C to the process group) leaves no temporary
// (beside OUT, or the object in TMPDIR) and no linker process behind.
// RUN: %moec_python %S/Inputs/signal-cleanup.py mixtral-compile %S/../goldens/mixtral_e4k2_f32 %t.signals | FileCheck %s --check-prefix=SIGNALS
// SIGNALS: sigterm: clean
// SIGNALS: sigint: clean
// SIGNALS: sigint-group: clean
