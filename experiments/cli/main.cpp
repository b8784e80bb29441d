// The `hypnos` command (work in progress: subcommands are being wired).
#include "hypnos/log.h"
int main(int argc, char** argv) { return 0; }
