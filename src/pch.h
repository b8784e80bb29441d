// Precompiled header of the hypnos library, its command and its tests: LibTorch takes about 13 s to
// parse per file on the 2-core development machine, so every .cpp shares this one parse.
// Public headers never include <torch/torch.h> (docs/contributing.md habit 9); only .cpp files see
// it, through here.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
