// The SHA-256 compression function over whole 64-byte blocks, portable and with the x86 SHA
// extensions (about 5-10x faster: checkpoint hashing is then disk-bound). Private to src/io; the
// tests compare the two on random states and blocks.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hypnos::io::detail {

using Sha256Blocks = void (*)(uint32_t* state, const uint8_t* blocks, size_t count);

/// FIPS 180-4 section 6.2.2 over `count` consecutive blocks.
void sha256_blocks_portable(uint32_t* state, const uint8_t* blocks, size_t count);

/// The SHA-NI version when this CPU has the SHA, SSSE3 and SSE4.1 extensions, else nullptr.
Sha256Blocks sha256_blocks_accelerated();

/// The fastest version this CPU runs.
Sha256Blocks sha256_blocks_best();

}  // namespace hypnos::io::detail
