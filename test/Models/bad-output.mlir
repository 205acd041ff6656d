// An output that cannot be written is refused before compiling; a failed compile never leaves
// a half-written OUT (outputs are written to a temporary name and renamed).
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
