// Session: reading a document in arbitrary chunks equals the window loop, and a memory file written
// here gives bit-identical logits when loaded in a fresh process (this binary, re-executed).
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "hypnos/io/safetensors.h"
#include "hypnos/nn/weights.h"
#include "hypnos/sleep/session.h"
#include "hypnos/sleep/window_loop.h"
#include "nn/tiny_model.h"
#include "testing/numeric.h"

extern char** environ;

namespace hypnos::sleep {
namespace {

constexpr const char* kChildDirVariable = "HYPNOS_SESSION_CHILD_DIR";

SleepOptions session_options() {
  SleepOptions o;
  o.n_passes = 3;
  o.window = 24;
  o.eviction = memory::Eviction::kSliding;  // the memory file then also holds retained KV
  return o;
}

nn::ModelOptions model_options() {
  nn::ModelOptions o;
  o.vocab_size = 8;
  o.d_model = 32;
  o.pattern = "AGJA";
  return o;
}

}  // namespace

TEST(Session, ReadingInChunksEqualsTheWindowLoop) {
  nn::HybridLM m = testing::tiny_model("AGAG", 30, 6);
  SleepOptions o;
  o.n_passes = 3;
  const auto tokens = testing::rule110_tokens(2, 30);
  Session session(m, o);
  session.feed(tokens.narrow(1, 0, 10));
  session.feed(tokens.narrow(1, 10, 50));
  session.feed(tokens.narrow(1, 60, 36));
  EXPECT_EQ(session.pending().size(1), 0);
  const auto answer = session.predict(tokens.narrow(1, 96, 4));
  at::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    expected = run_windows(m, tokens, at::Tensor(), memory::ModelMemory::empty(4), o)
                   .logits.narrow(1, 96, 4);
  }
  EXPECT_LT(testing::relative_error(answer, expected), 1e-14);
  // Predicting consumes nothing.
  EXPECT_TRUE(session.predict(tokens.narrow(1, 96, 4)).equal(answer));
}

// A memory is refused by a Session with any other sleep option, or with another model (other
// weights, other architecture), naming each key with both values; the same model and options
// (a copy of the model included) load it and answer as the Session that wrote it.
TEST(Session, LoadRefusesAMemoryOfOtherSleepOptionsOrAnotherModel) {
  nn::HybridLM m = testing::tiny_model("AGAG", 31, 6);
  Session a(m, session_options());
  a.feed(at::zeros({1, 30}, at::kLong));
  const auto path = std::filesystem::temp_directory_path() /
                    ("hypnos_session_" + std::to_string(::getpid()) + ".safetensors");
  a.save(path);
  auto expect_refused = [&](nn::HybridLM model, const SleepOptions& o,
                            const std::string& expected) {
    Session b(model, o);
    try {
      b.load(path);
      ADD_FAILURE() << "loaded although " << expected;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  };
  SleepOptions o = session_options();
  o.window = 12;
  expect_refused(m, o, "sleep.window is '24' in the file, '12' in the loading Session");
  o = session_options();
  o.n_passes = 2;
  expect_refused(m, o, "sleep.n_passes is '3' in the file, '2' in the loading Session");
  o = session_options();
  o.loop_layers = {1, 3};
  expect_refused(m, o, "sleep.loop_layers is '[]' in the file, '[1, 3]' in the loading Session");
  o = session_options();
  o.state_between_passes = StateBetweenPasses::kRestart;
  expect_refused(m, o, "sleep.state_between_passes is 'thread' in the file, 'restart'");
  o = session_options();
  o.schedule = Schedule::kLossFree;
  expect_refused(m, o, "sleep.schedule is 'evicted' in the file, 'loss_free'");
  o = session_options();
  o.eviction = memory::Eviction::kHard;
  expect_refused(m, o, "sleep.eviction is 'sliding' in the file, 'hard'");
  expect_refused(testing::tiny_model("AGAG", 99, 6), session_options(),
                 "the model's weights differ");
  expect_refused(testing::tiny_model("AGJG", 31, 6), session_options(),
                 "model.pattern is '\"AGAG\"' in the file, '\"AGJG\"' in the loading Session");
  // The same weights in a copy of the model, with the same options: loaded, same answers.
  nn::HybridLM copy = std::dynamic_pointer_cast<nn::HybridLMImpl>(m->clone());
  Session c(copy, session_options());
  c.load(path);
  const auto query = at::ones({1, 3}, at::kLong);
  EXPECT_TRUE(c.predict(query).equal(a.predict(query)));
  ::unlink(path.c_str());
}

TEST(Session, MemoryRestoredInAFreshProcessGivesIdenticalLogits) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("hypnos_session_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  torch::manual_seed(32);
  nn::HybridLM m(model_options());
  Session session(m, session_options());
  auto gen = at::make_generator<at::CPUGeneratorImpl>(33);
  const auto document = at::randint(0, 8, {2, 100}, gen, at::TensorOptions().dtype(at::kLong));
  const auto query = at::randint(0, 8, {2, 5}, gen, at::TensorOptions().dtype(at::kLong));
  session.feed(document);  // 4 windows slept and evicted, 4 tokens pending
  const auto logits = session.predict(query);
  nn::save_weights(m, dir / "weights.safetensors");
  session.save(dir / "memory.safetensors");
  io::save_safetensors(dir / "expected.safetensors",
                       io::NamedTensors{{"query", query}, {"logits", logits}});

  // Re-execute this binary on the child test alone, pointing it at the directory.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::string filter = "--gtest_filter=SessionChild.*";
  std::vector<char*> argv{const_cast<char*>(self.c_str()), filter.data(), nullptr};
  std::vector<std::string> env_strings{std::string(kChildDirVariable) + "=" + dir.string()};
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), envp.data()), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_TRUE(std::filesystem::exists(dir / "child_compared"))
      << "the child did not reach the comparison";
  // POSIX calls: the torch wheel's libtorch.so exports a std::filesystem::remove_all that crashes
  // when it is bound in place of libstdc++'s.
  for (const char* f :
       {"weights.safetensors", "memory.safetensors", "expected.safetensors", "child_compared"}) {
    ::unlink((dir / f).c_str());
  }
  ::rmdir(dir.c_str());
}

// The other half of the test above: runs only when re-executed with HYPNOS_SESSION_CHILD_DIR.
TEST(SessionChild, LoadsMemoryAndReproducesLogits) {
  const char* dir_env = std::getenv(kChildDirVariable);
  if (dir_env == nullptr) GTEST_SKIP() << "runs inside Session.MemoryRestoredInAFreshProcess...";
  const std::filesystem::path dir(dir_env);
  nn::HybridLM m(model_options());  // fresh random weights, then the saved ones
  nn::load_weights(m, dir / "weights.safetensors");
  Session session(m, session_options());
  session.load(dir / "memory.safetensors");
  const auto expected = io::load_safetensors(dir / "expected.safetensors");
  const auto logits = session.predict(expected.at("query"));
  ASSERT_TRUE(logits.equal(expected.at("logits"))) << "logits differ after reload";
  std::ofstream(dir / "child_compared") << "ok\n";
}

}  // namespace hypnos::sleep
