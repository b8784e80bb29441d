// Which parameters a run trains (train.trainable): all of them, or only the JetBlocks inserted into
// a pretrained model, the first stage of the paper's sliding-window recipe for Ouro. Frozen
// parameters get requires_grad = false before the optimizer is built, so they get no gradient and
// no optimizer state (split_parameters leaves them out) and keep their loaded values bit for bit.
#pragma once
#include <cstdint>
#include <vector>

#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/train/train_options.h"

namespace hypnos::train {

/// Execution-order indices of the blocks model.inserted_jet_after inserts (as HybridLM::block
/// counts them: each pattern block, then the JetBlocks inserted after it).
std::vector<int64_t> inserted_block_indices(const nn::ModelOptions& options);

/// Freezes every parameter that `which` does not train (requires_grad = false) and returns the
/// number of elements left trainable. kAll changes nothing. kInserted on a model without inserted
/// blocks throws std::invalid_argument naming train.trainable (load_run_config refuses it first).
int64_t apply_trainable(nn::HybridLM& model, Trainable which);

}  // namespace hypnos::train
