#!/usr/bin/env bash
# The benchmark figures of the README on one GPU: MFU of the paper's 151M and 1.2B
# at context 512 in bf16 (vocabulary 50280), loop overhead, input pipeline, switch stall.
#   bash experiments/benchmarks/run_gpu.sh [part ...]     parts: mfu overhead data stall all
set -euo pipefail
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
parts=("${@:-mfu overhead data stall}")
for part in ${parts[*]}; do
  case "$part" in
    mfu)
      python3 mfu.py --preset 151M --ctx 512 --dtype bfloat16 --vocab 50280 --batch 64 --micro 32
      python3 mfu.py --preset 1.2B --ctx 512 --dtype bfloat16 --vocab 50280 --batch 32 --micro 8 --steps 10
      ;;
    overhead) python3 step_overhead.py --preset 151M --ctx 512 --dtype bfloat16 --batch 64 --micro 32 ;;
    data) python3 data_throughput.py --preset 151M --ctx 512 --dtype bfloat16 --batch 64 --micro 32 ;;
    stall)
      python3 switch_stall.py --preset 85M --ctx 512 --dtype bfloat16 --sizes 16,32,64,128 \
        --micro 32 --first-steps 300 --steps 15
      ;;
    stall-eager)  # the same with CUDA kernels loaded at start instead of at first launch
      CUDA_MODULE_LOADING=EAGER python3 switch_stall.py --preset 85M --ctx 512 --dtype bfloat16 \
        --sizes 16,32,64,128 --micro 32 --first-steps 300 --steps 15
      ;;
    all)  # every section in one JSON + markdown table: 85M-1.2B x ctx 512, 2048 x K 1, 2, 4, 8
      (cd ../.. && python3 -m experiments.benchmarks.run)
      ;;
    mfu-cudnn)
      python3 mfu.py --preset 151M --ctx 512 --dtype bfloat16 --vocab 50280 --batch 64 --micro 64 \
        --attention cudnn
      ;;
    *) echo "unknown part $part (mfu mfu-cudnn overhead data stall stall-eager all)" >&2; exit 2 ;;
  esac
done
