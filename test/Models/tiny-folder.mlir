// --tiny writes its random checkpoint only into OUT.model/ when it does not exist or an earlier
// --tiny made it (it holds the .mixtral-compile-tiny marker): never through a symlink, never
// into a folder it did not create (a real checkpoint would be overwritten with random weights).
// REQUIRES: mixtral-compile
// RUN: rm -rf %t && mkdir -p %t/real && echo precious > %t/real/config.json
// RUN: ln -s real %t/linked.model
// RUN: not mixtral-compile --tiny --emit=mlir -o %t/linked 2>&1 | FileCheck %s --check-prefix=LINK
// RUN: mkdir %t/theirs.model && echo precious > %t/theirs.model/config.json
// RUN: not mixtral-compile --tiny --emit=mlir -o %t/theirs 2>&1 | FileCheck %s --check-prefix=THEIRS
// RUN: FileCheck %s --check-prefix=PRECIOUS --input-file=%t/real/config.json
// RUN: FileCheck %s --check-prefix=PRECIOUS --input-file=%t/theirs.model/config.json
// RUN: ls %t/real | count 1
// Ours: made by the first run, overwritten by the second; a symlink planted in it is replaced,
// not followed.
// RUN: mixtral-compile --tiny --emit=mlir -o %t/ours
// RUN: test -f %t/ours.model/.mixtral-compile-tiny
// RUN: rm %t/ours.model/config.json && ln -s ../real/config.json %t/ours.model/config.json
// RUN: mixtral-compile --tiny --emit=mlir -o %t/ours
// RUN: test ! -L %t/ours.model/config.json
// RUN: FileCheck %s --check-prefix=PRECIOUS --input-file=%t/real/config.json

// LINK: mixtral-compile: error: {{.*}}linked.model: is a symbolic link; --tiny writes only into a folder it created (remove it or choose another -o)
// THEIRS: mixtral-compile: error: {{.*}}theirs.model: exists and was not created by mixtral-compile --tiny (no .mixtral-compile-tiny); refusing to overwrite it (remove it or choose another -o)
// PRECIOUS: precious
