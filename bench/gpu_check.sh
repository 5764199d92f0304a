#!/usr/bin/env bash
# spikeforge on one GPU in one script: prints ONE JSON report (bench/gpu_check.py says what it holds).
#
#   bench/gpu_check.sh                      # fresh venv, then the checks (<= 8 min on one GPU)
#   bench/gpu_check.sh --reduced            # the small CPU checks (what runs without a GPU)
#   bench/gpu_check.sh --python "$(which python)" --reduced   # reuse an environment, no installs
#   bench/gpu_check.sh --pack-data SRC DEST TRAIN_PER_CLASS TEST_PER_CLASS   # a class-balanced subset
#
# Options: --python PY (skip the venv), --venv DIR (default .gpu-check-venv), --wheels DIR (install
# from these wheels only, for machines without a package index), --budget-s N (default 480, the
# whole script), --data DIR (image-folder CIFAR-10, default ../shared/data/cifar10-jpeg), --reduced,
# --steps NAME... (a subset of bench/gpu_check.py's steps).
#
# Setup, from a machine that has only this repository and a python3: a venv that sees python3's
# packages (a preinstalled CUDA torch, Triton, CuPy are reused; installs go into the venv), torch from
# the package index only if none imports (PyPI's Linux wheel is the CUDA build), spikeforge's own
# requirements if missing, the peers SpikingJelly 2.0.0 and snnTorch 1.0.0 with --no-deps. A failed
# install is recorded in the report's "setup" and the checks run with what is there; spikeforge
# itself runs from this checkout (PYTHONPATH=src), never from an installed copy.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=480
PY=""
VENV=".gpu-check-venv"
WHEELS=""
DRIVER_ARGS=()

pack_data() {  # SRC DEST TRAIN_PER_CLASS TEST_PER_CLASS: the first N files (sorted) of every class
  local src=$1 dest=$2 split n cls
  for split in train test; do
    n=$3; [ "$split" = test ] && n=$4
    [ -d "$src/$split" ] || { echo "no $src/$split (expected SRC/{train,test}/<class>/<image>)" >&2; return 1; }
    for cls in $(ls "$src/$split"); do
      mkdir -p "$dest/$split/$cls"
      ls "$src/$split/$cls" | sort | head -n "$n" | while read -r f; do cp "$src/$split/$cls/$f" "$dest/$split/$cls/"; done
    done
  done
  du -sh "$dest" >&2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --pack-data) [ $# -ge 5 ] || { echo "--pack-data SRC DEST TRAIN_PER_CLASS TEST_PER_CLASS" >&2; exit 2; }
                 pack_data "$2" "$3" "$4" "$5"; exit $? ;;
    --python) PY=$2; shift 2 ;;
    --venv) VENV=$2; shift 2 ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --budget-s) BUDGET=$2; shift 2 ;;
    --data) DRIVER_ARGS+=(--data "$2"); shift 2 ;;
    --reduced) DRIVER_ARGS+=(--reduced); shift ;;
    --steps) shift; DRIVER_ARGS+=(--steps); while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do DRIVER_ARGS+=("$1"); shift; done ;;
    *) echo "gpu_check.sh: unknown option $1 (see the header of bench/gpu_check.sh)" >&2; exit 2 ;;
  esac
done

SETUP_LOG=$(mktemp)
SETUP_JSON=$(mktemp)
STEPS_DONE=()
STEPS_FAILED=()
note() { if "$@" >>"$SETUP_LOG" 2>&1; then STEPS_DONE+=("$*"); else STEPS_FAILED+=("$*"); fi; }
PIP_SOURCE=()
[ -n "$WHEELS" ] && PIP_SOURCE=(--no-index --find-links "$WHEELS")

if [ -z "$PY" ]; then
  [ -x "$VENV/bin/python" ] || note python3 -m venv --system-site-packages "$VENV"
  PY="$VENV/bin/python"
  if [ -x "$PY" ]; then
    # python3 may itself be a venv (the H200 image's is): --system-site-packages then sees the base
    # interpreter's packages only, so also put python3's own site-packages behind the new venv's
    VENV_SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    python3 -c "import site; print('\n'.join(site.getsitepackages()))" > "$VENV_SITE/_gpu_check_host.pth" 2>/dev/null
    "$PY" -c "import torch" 2>/dev/null || note "$PY" -m pip install -q "${PIP_SOURCE[@]}" torch
    "$PY" -c "import numpy, safetensors, tqdm, matplotlib, PIL, pytest" 2>/dev/null \
      || note "$PY" -m pip install -q "${PIP_SOURCE[@]}" numpy safetensors tqdm matplotlib pillow pytest
    "$PY" -c "import spikingjelly, snntorch" 2>/dev/null \
      || note "$PY" -m pip install -q --no-deps "${PIP_SOURCE[@]}" -r bench/requirements-peers.txt
  fi
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
  # nothing to run the checks with: still one JSON report
  python3 - "$SETUP_LOG" <<'EOF'
import json, sys
print(json.dumps({"check": "bench/gpu_check", "ok": False, "error": "no python with torch could be set up",
                  "setup_log_tail": open(sys.argv[1]).read()[-3000:]}, indent=1))
EOF
  exit 1
fi
"$PY" - "$SETUP_JSON" "$SETUP_LOG" "$(( $(date +%s) - START ))" "$PY" "${#STEPS_FAILED[@]}" "${STEPS_DONE[@]}" <<'EOF'
import json, sys
out, log, seconds, py, n_failed, *done = sys.argv[1:]
text = open(log).read()
json.dump({"python": py, "seconds": int(seconds), "done": done, "failed_count": int(n_failed),
           "log_tail": text[-2000:] if int(n_failed) else ""}, open(out, "w"))
EOF
LEFT=$(( BUDGET - ($(date +%s) - START) ))
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" bench/gpu_check.py --budget-s "$LEFT" --setup "$SETUP_JSON" \
  ${DRIVER_ARGS[@]+"${DRIVER_ARGS[@]}"}
RC=$?
rm -f "$SETUP_LOG" "$SETUP_JSON"
exit $RC
