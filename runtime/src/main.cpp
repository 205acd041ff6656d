// main.cpp — main() of every compiled model binary: <generated>.o + this + libmoec_runtime.a.
#include "moec/run.h"

int main(int argc, char **argv) { return moec::run_main(argc, argv); }
