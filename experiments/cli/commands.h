// The `hypnos` subcommands: each has a spec (for parsing and --help) and a handler returning the
// exit code.
#pragma once
#include "command_line.h"

namespace hypnos::cli {

const CommandSpec& train_spec();
const CommandSpec& eval_spec();
const CommandSpec& generate_spec();
const CommandSpec& score_spec();
const CommandSpec& sleep_spec();
const CommandSpec& answer_spec();
const CommandSpec& export_spec();

int run_train(const ParsedArgs& args);
int run_eval(const ParsedArgs& args);
int run_generate(const ParsedArgs& args);
int run_score(const ParsedArgs& args);
int run_sleep(const ParsedArgs& args);
int run_answer(const ParsedArgs& args);
int run_export(const ParsedArgs& args);

}  // namespace hypnos::cli
