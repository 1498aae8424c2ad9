#!/usr/bin/env bash
# The `cuda` device's checks as one prepared run, for a machine with an NVIDIA GPU whose python3 already has
# cuda-bindings, NVRTC, cuBLAS, torch and pytest (nothing is installed; no network is needed).
#   bench/gpu_check.sh [quick|suite|bench]...   (default: quick bench)
#   quick: the accelerator tests on cuda (device, jit program, CUDA graphs, renderer), stopping at the first failure
#   suite: every device-parametrized test on cuda
#   bench: bench/ops.py and bench/train.py with --device cuda, torch on the same GPU
# quick and bench together stay under 10 minutes (a device run's limit); suite alone takes up to 9.
# Logs go to $OUT (else /tmp/fusegrad-gpu-check), so a remote run brings them back.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/fusegrad-gpu-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
workers=$(( $(nproc) < 8 ? $(nproc) : 8 ))
python3 -c "import fusegrad as fg, torch; print('fusegrad devices', fg.available_devices(), 'torch', torch.__version__,
torch.cuda.is_available())" 2>&1 | tee "$out/devices.log"
for stage in "${@:-quick bench}"; do
  for s in $stage; do
    case "$s" in
      quick) timeout 200 python3 -m pytest -x -q -n "$workers" -p no:cacheprovider -k cuda tests/test_gpu_devices.py \
               tests/test_gpu_program.py tests/test_cuda_render.py tests/test_jit.py 2>&1 | tee "$out/quick.log" ;;
      suite) timeout 540 python3 -m pytest -q -n "$workers" -p no:cacheprovider -k cuda 2>&1 | tee "$out/suite.log" ;;
      bench) timeout 150 python3 bench/ops.py --device cuda --repeat 20 2>&1 | tee "$out/ops.log"
             timeout 200 python3 bench/train.py --device cuda --workload mlp64,mlp256,gpt16 --first-steps-for none \
               2>&1 | tee "$out/train.log" ;;
      *) echo "unknown stage $s (quick, suite, bench)"; exit 2 ;;
    esac
  done
done
