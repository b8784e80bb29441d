// The glossary of shape letters used in every `// x: [B, T, H, K]` comment of hypnos.
#pragma once

namespace hypnos {
// B  batch size                      T  sequence (or window) length in tokens
// H  heads                           K  key / query head dimension (head_dim_k)
// V  value head dimension            D  model width (d_model)
// L  sleep window length (tokens)    N  sleep passes per window (n_passes)
// C  chunk length of the chunked delta rule (64)
// NC number of chunks, ceil(T / C)   W  number of windows, ceil(T / L)
// S  a fast-weight state [B, H, K, V], fp32
inline constexpr int kShapeGlossaryVersion = 1;
}  // namespace hypnos
