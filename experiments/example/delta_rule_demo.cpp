// A tiny outside experiment: runs hypnos's gated delta rule over a sequence in two halves, carrying
// the fast-weight state, and checks it equals one pass over the whole sequence (the property sleep
// relies on).
#include <hypnos/ops/gated_delta_rule.h>
#include <hypnos/version.h>
#include <torch/torch.h>

#include <cstdio>

int main() {
  torch::manual_seed(0);
  const int64_t B = 2, T = 40, H = 3, K = 8, V = 6;
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto q = torch::nn::functional::normalize(torch::randn({B, T, H, K}, opts),
                                            torch::nn::functional::NormalizeFuncOptions().dim(-1));
  auto k = torch::nn::functional::normalize(torch::randn({B, T, H, K}, opts),
                                            torch::nn::functional::NormalizeFuncOptions().dim(-1));
  auto v = torch::randn({B, T, H, V}, opts);
  auto g = -torch::rand({B, T, H}, opts);
  auto beta = torch::rand({B, T, H}, opts);
  const auto whole = hypnos::ops::gated_delta_rule(q, k, v, g, beta, std::nullopt);
  const int64_t cut = 17;
  auto half = [&](int64_t a, int64_t b, const std::optional<at::Tensor>& s) {
    return hypnos::ops::gated_delta_rule(q.slice(1, a, b), k.slice(1, a, b), v.slice(1, a, b),
                                         g.slice(1, a, b), beta.slice(1, a, b), s);
  };
  const auto first = half(0, cut, std::nullopt);
  const auto second = half(cut, T, first.final_state);
  const double err = (second.final_state - whole.final_state).abs().max().item<double>();
  std::printf("hypnos %s: state error after two halves vs one pass: %.3g\n", hypnos::kVersion, err);
  return err < 1e-10 ? 0 : 1;
}
