// Emulation shim: the kernels include this CUDA header; under tests/emu it is cuda_emu.h.
#pragma once
#include "cuda_emu.h"
