#!/usr/bin/env bash
# The GPU checks and benchmarks in one go, for a machine with a CUDA GPU (each step has a time
# limit; all together stay under 8 minutes): `pytest -m gpu`, the extraction benchmark on CUDA
# in float32 and under bf16 autocast (tokens/s against the bare forward pass), and the batched
# probe times. Everything printed also goes under ${OUT:-bench_out}/.
#
#   benchmarks/gpu.sh                  # makes the venv $VENV (.venv-gpu) once, then runs
#   WHEELS=dir benchmarks/gpu.sh       # offline: pip installs from that folder of wheels
#
# The venv is made as the Makefile makes its own, except where the Python that makes it
# (PYTHON, default python3) already has a torch that sees a GPU, as on a GPU image: then the
# venv sees that Python's packages and installs only what is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench_out}"
VENV="${VENV:-.venv-gpu}"
BASE="${PYTHON:-python3}"
mkdir -p "$OUT"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
FROM=()
[ -n "${WHEELS:-}" ] && FROM=(--no-index --find-links "$WHEELS")

if [ ! -f "$VENV/.installed" ]; then
  set -e
  "$BASE" -m venv "$VENV"
  if "$BASE" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    "$BASE" -c "import site; print('\n'.join(site.getsitepackages()))" > "$site/gpu-image.pth"
    "$VENV/bin/pip" install -q "${FROM[@]}" -e ".[dev]"
  else  # as the Makefile does: PyPI's Linux torch wheels are CUDA builds
    "$VENV/bin/pip" install -q "${FROM[@]}" -c constraints.txt torch
    "$VENV/bin/pip" install -q "${FROM[@]}" -c constraints.txt -e ".[dev]"
  fi
  touch "$VENV/.installed"
  set +e
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

python - <<'EOF' | tee "$OUT/device.txt" || exit 1
import sys, torch
if not torch.cuda.is_available():
    sys.exit("benchmarks/gpu.sh: torch sees no CUDA GPU here")
print(f"torch {torch.__version__}, {torch.cuda.device_count()} × {torch.cuda.get_device_name()}")
EOF

failed=()
step() {  # step NAME SECONDS COMMAND…: run it under a time limit, keep its output
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit} s)"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt" || failed+=("$name")
}

step pytest_gpu 100 python -m pytest -m gpu -q -rs -p no:cacheprovider
step extraction 120 python benchmarks/extraction.py --device cuda --episodes 1024 \
  --batch-size 256 --skip-flat
step extraction_bf16 110 python benchmarks/extraction.py --device cuda --autocast bf16 \
  --episodes 1024 --batch-size 256 --skip-flat
step probes_quick 50 python benchmarks/probes.py --device cuda --quick
step probes_full_size 50 python - <<'EOF'
"""Batched probes at the probe benchmark's full size (12 layers × 16 targets, 4,000 × 768, 3
classes) on CUDA, without its scikit-learn loops: seconds per fit (best of 3)."""
import sys, time, warnings
import torch
sys.path.insert(0, "benchmarks")
from probes import activations
from probekit.probes import fit_linear_probes

X, Y = activations(7000, 12, 768, 16, 3, seed=0)
train, val = (X[:, :4000], Y[:4000]), (X[:, 4000:5000], Y[4000:5000])
for kind in ("logistic", "ridge_classifier"):
    best = float("inf")
    for _ in range(3):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probes = fit_linear_probes(*train, kind, X_val=val[0], Y_val=val[1], device="cuda")
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    acc = probes.score(X[:, 5000:], Y[5000:]).mean()
    print(f"{kind:18s} 192 probes, alpha chosen on val: {best:6.2f} s on CUDA "
          f"(mean test accuracy {100 * acc:.1f}%)")
EOF

if [ ${#failed[@]} -gt 0 ]; then
  echo "failed or timed out: ${failed[*]} (outputs in $OUT/)"
  exit 1
fi
echo "all GPU checks passed; outputs in $OUT/"
