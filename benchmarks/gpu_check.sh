#!/usr/bin/env bash
# GPU check, one script (under 5 minutes on a 16-core H200 machine): the GPU, the GPU tests, CPU vs GPU cells/s.
#
#   bash benchmarks/gpu_check.sh                 # on a GPU machine
#   bash benchmarks/gpu_check.sh --cpu-only --cells 4000 --genes 500 --nnz 50    # anywhere: no GPU parts
#
# --no-sync: use the environment as it is (no uv sync). Every other argument goes to benchmarks/gpu_check.py
# (--cells, --genes, --nnz, --repeats, --cpu-only, --data-dir, --json ...).
# The environment: `uv sync --locked --extra gpu` (cupy too) when PyPI answers; otherwise `uv sync --locked
# --offline` from the uv cache, or the existing .venv as it is (cupy tests then skip). It prints what it did.
set -u
cd "$(dirname "$0")/.."
start=$(date +%s)
say() { echo "== [$(( $(date +%s) - start )) s] $*"; }
cpu_only=0
sync=1
args=()
for arg in "$@"; do
  case "$arg" in
    --no-sync) sync=0 ;;
    --cpu-only) cpu_only=1; args+=("$arg") ;;
    *) args+=("$arg") ;;
  esac
done

say "machine: $(nproc) cores, $(uname -sr)"
if [ "$cpu_only" = 0 ] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
else
  say "no nvidia-smi or --cpu-only: GPU parts will be skipped"
fi

run="uv run --no-sync"
if ! command -v uv >/dev/null 2>&1; then
  if [ -x .venv/bin/python ]; then run=".venv/bin/python -m"; run_py=".venv/bin/python"; say "env: no uv; using .venv as it is"
  else say "env: neither uv nor .venv: cannot run"; exit 1; fi
elif [ "$sync" = 0 ]; then
  say "env: --no-sync: the environment as it is"
elif [ "$cpu_only" = 0 ] && timeout 150 uv sync --locked --extra gpu >/tmp/gpu_check_sync.log 2>&1; then
  say "env: uv sync --locked --extra gpu (cupy installed)"
elif timeout 90 uv sync --locked --offline >/tmp/gpu_check_sync.log 2>&1; then
  say "env: uv sync --locked --offline (from the uv cache; no cupy unless cached)"
elif [ -x .venv/bin/python ]; then
  say "env: uv sync failed (tail of its log below); using the existing .venv as it is"; tail -3 /tmp/gpu_check_sync.log
else
  say "env: uv sync failed and there is no .venv:"; tail -5 /tmp/gpu_check_sync.log; exit 1
fi
py="${run_py:-$run python}"
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" || true
$py -c "import cupy; print('cupy', cupy.__version__)" 2>/dev/null || echo "cupy: not installed (cupy tests skip)"

if [ "$cpu_only" = 0 ]; then
  say "GPU tests: pytest tests/load/test_gpu.py tests/load/test_layers.py -k cuda"
  timeout 240 $run pytest tests/load/test_gpu.py -q -p no:cacheprovider -rs || say "GPU tests FAILED (continuing to the benchmark)"
  timeout 120 $run pytest tests/load/test_layers.py -q -p no:cacheprovider -k cuda || say "layers CUDA test FAILED"
else
  say "GPU tests skipped (--cpu-only)"
fi

say "benchmark: benchmarks/gpu_check.py ${args[*]:-}"
timeout 420 $py benchmarks/gpu_check.py ${args[@]+"${args[@]}"}
rc=$?
say "done (rc=$rc)"
exit $rc
