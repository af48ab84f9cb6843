#!/usr/bin/env bash
# The GPU tables of docs/performance.md: the harness under Keras' JAX
# backend (every train step compiled with XLA; cuDNN for LSTM) and under its
# torch backend (no XLA; cuDNN for LSTM and GRU), one after the other; the
# infer suite (predict at batch 1 and 256) under both.
#
#   bash benchmarks/gpu.sh OUT_DIR   # LIMIT=seconds caps each part,
#                                    # ARGS="--quick" adds arguments
#
# Each part writes OUT_DIR/<part>.md and .json after every suite. The
# harness imports TensorFlow only under its backend: the GPU machine needs
# none. (On a CPU, `python -m benchmarks --backend all --onednn both` runs
# every backend side by side instead.)
set -u
out=${1:-gpu-bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
py=${PYTHON:-python3}

part() {  # part backend harness-arguments...
  local name=$1 backend=$2
  shift 2
  echo "== $name: KERAS_BACKEND=$backend python -m benchmarks $*"
  # shellcheck disable=SC2086
  KERAS_BACKEND=$backend timeout "${LIMIT:-3600}" "$py" -m benchmarks "$@" ${ARGS:-} \
    --markdown "$out/$name.md" --json "$out/$name.json" 2>&1 |
    grep -v '^WARNING\|^I0000\|^W0000'
}

part jax jax --suite gf renet --renet-cell lstm
part torch torch --suite gf infer renet --unit-types lstm gru
part jax-scaling jax --suite clockwork gf_params infer length layers
