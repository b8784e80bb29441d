#!/usr/bin/env bash
# Installs the built hypnos into a temporary prefix (the `hypnos` command, not `hypnos_bench`), builds
# experiments/example against it as an outside project would (find_package(hypnos), hypnos::hypnos),
# and runs the example.
set -euo pipefail
build_dir=$1 source_dir=$2 python=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build_dir" --prefix "$tmp/prefix" > "$tmp/install.log"
# The install ships the `hypnos` command and not the benchmarks' program (built beside it).
[[ -x $tmp/prefix/bin/hypnos ]] || { echo "FAIL: bin/hypnos is not installed" >&2; exit 1; }
[[ ! -e $tmp/prefix/bin/hypnos_bench ]] || { echo "FAIL: bin/hypnos_bench is installed" >&2; exit 1; }
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S "$source_dir/experiments/example" -B "$tmp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$tmp/prefix;$torch_prefix" > "$tmp/configure.log" 2>&1 ||
  { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/build" -j 2 > "$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
"$tmp/build/delta_rule_demo"
