#!/usr/bin/env bash
# GPU check, one script (under 5 minutes on a 16-core H200 machine): the GPU, the GPU tests, CPU vs GPU cells/s.
#
#   bash benchmarks/gpu_check.sh                 # on a GPU machine
#   bash benchmarks/gpu_check.sh --cpu-only --cells 4000 --genes 500 --nnz 50    # anywhere: no GPU parts
#
# --no-sync: use the environment as it is (no uv sync). Every other argument goes to benchmarks/gpu_check.py
# (--cells, --genes, --nnz, --repeats, --cpu-only, --data-dir, --json ...).
# The environment: `uv sync --locked --extra gpu` (cupy too) when PyPI answers; otherwise `uv sync --locked
# --offline` from uv's cache, or the existing .venv, or the machine's python3 (GPU images ship torch, cupy, scipy,
# pandas, h5py, pytest) with annshard from src/ and any wheels carried in .whl/ (anndata, zarr, zarrs, numcodecs, ...;
# see docs/performance.md, "GPU"). It prints what it did; the cupy tests skip without cupy.
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

# the environment: uv (synced from the lock when it can be), else .venv, else the machine's python3 (GPU images
# ship torch and cupy) with annshard from src/ and its missing dependencies from wheels carried in .whl/
py=""
if command -v uv >/dev/null 2>&1; then
  online=0
  python3 -c "import socket; socket.create_connection(('pypi.org', 443), 3)" >/dev/null 2>&1 && online=1
  if [ "$sync" = 0 ]; then
    say "env: --no-sync: uv's environment as it is"; py="uv run --no-sync python"
  elif [ "$online" = 1 ] && [ "$cpu_only" = 0 ] && timeout 150 uv sync --locked --extra gpu >/tmp/gpu_check_sync.log 2>&1; then
    say "env: uv sync --locked --extra gpu (cupy from the lock)"; py="uv run --no-sync python"
  elif timeout 90 uv sync --locked --offline >/tmp/gpu_check_sync.log 2>&1; then
    say "env: uv sync --locked --offline (PyPI $([ $online = 1 ] && echo reachable || echo unreachable); from uv's cache, no cupy extra)"
    py="uv run --no-sync python"
  else
    say "env: uv sync failed:"; tail -3 /tmp/gpu_check_sync.log
  fi
fi
if [ -z "$py" ] && [ -x .venv/bin/python ] && .venv/bin/python -c "import annshard" 2>/dev/null; then
  say "env: the existing .venv as it is"; py=".venv/bin/python"
fi
if [ -z "$py" ]; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/annshard-site .whl/*.whl \
      && say "env: installed $(ls .whl/*.whl | wc -l) carried wheels from .whl/ into /tmp/annshard-site"
  fi
  export PYTHONPATH="/tmp/annshard-site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  if python3 -c "import annshard" 2>/tmp/gpu_check_import.log; then
    say "env: system python3 ($(command -v python3)) with annshard from src/"; py="python3"
  else
    say "env: no usable environment (no uv, no .venv; python3 cannot import annshard):"; tail -2 /tmp/gpu_check_import.log
    python3 -c "
import importlib.util as u
need = ['anndata', 'zarr', 'zarrs', 'numcodecs', 'numpy', 'scipy', 'pandas', 'h5py', 'tqdm', 'torch', 'pytest', 'hypothesis']
print('missing modules:', [m for m in need if u.find_spec(m) is None])"
    exit 1
  fi
fi
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" || true
$py -c "import cupy; print('cupy', cupy.__version__)" 2>/dev/null || echo "cupy: not installed (cupy tests skip)"

if [ "$cpu_only" = 0 ]; then
  say "GPU tests: pytest tests/load/test_gpu.py tests/load/test_layers.py -k cuda"
  timeout 240 $py -m pytest tests/load/test_gpu.py -q -p no:cacheprovider -rs || say "GPU tests FAILED (continuing to the benchmark)"
  timeout 120 $py -m pytest tests/load/test_layers.py -q -p no:cacheprovider -k cuda || say "layers CUDA test FAILED"
else
  say "GPU tests skipped (--cpu-only)"
fi

say "benchmark: benchmarks/gpu_check.py ${args[*]:-}"
timeout 420 $py benchmarks/gpu_check.py ${args[@]+"${args[@]}"}
rc=$?
say "done (rc=$rc)"
exit $rc
