// parser.h — PTX text to a decoded Module (program.h): statements, declarations (registers,
// parameters, shared/local arrays, module globals, which are allocated and registered as device
// memory here), and instructions with their modifiers and operands resolved. Anything the
// interpreter would not run exactly (an unknown opcode or modifier, .func, bar.arrive, an mma
// shape other than m16n8k16) is rejected here, naming the PTX line.
#pragma once

#include "program.h"

#include <string>

namespace ptxemu {

/// Parses `src` into `m`; throws Fault on PTX it does not support.
void parse_module(Module &m, const std::string &src);

} // namespace ptxemu
