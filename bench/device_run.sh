#!/usr/bin/env bash
# The first GPU run: build fastnplm with CUDA for one architecture from this tree, offline, and
# run bench/gpu.py. Written for the lent GPU machine (one H100, no network; its image has nvcc,
# CMake, ninja, numpy, scipy, torch, pybind11, scikit-build-core, but not scipy-openblas32).
#
#   bash bench/fetch_wheels.sh          # first, on a machine with PyPI: fills bench/wheels/
#   bash bench/device_run.sh            # on the GPU machine, from the repository root
#   bash bench/device_run.sh --smoke    # anywhere: the same install, then gpu.py --smoke (CPU)
#
# What it writes to $OUT (the folder that comes back; default build/device-run/out):
#   device_run.log     everything this script printed (nvidia-smi, versions, build_info, gpu.py)
#   build.log          pip's verbose build output (CMake configure, nvcc/g++ commands)
#   gpu_<device>.json  bench/gpu.py's document (rewritten after every case, "complete" at the end)
#   CMakeConfigureLog.yaml / CMakeError.log, only when the CMake configure step failed
#
# Environment (all optional):
#   PYTHON               interpreter whose packages the venv sees (default python3)
#   FASTNPLM_VENV        venv to create, replaced each run (default build/device-run/venv)
#   CUDA_ARCHS           CMAKE_CUDA_ARCHITECTURES (default 90: H100/H200)
#   DEVICE_RUN_BUDGET_S  seconds for the whole script (default 420); gpu.py gets what the build
#                        left and is stopped at the end of it (its rows so far are kept)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=0
if [[ ${1:-} == --smoke ]]; then SMOKE=1; fi
OUT=${OUT:-$ROOT/build/device-run/out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WHEELS=$ROOT/bench/wheels
VENV=${FASTNPLM_VENV:-$ROOT/build/device-run/venv}
PYTHON=${PYTHON:-python3}
ARCHS=${CUDA_ARCHS:-90}
BUDGET=${DEVICE_RUN_BUDGET_S:-420}

main() {
  local t0=$SECONDS
  echo "== device_run.sh: $(date -u +%FT%TZ), $(uname -srm), $(nproc) cores, budget ${BUDGET} s, smoke=$SMOKE"
  echo "== tree: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git metadata')"

  # -- the device (printed first, so a failed build still says what the machine was)
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi || echo "nvidia-smi failed (rc=$?)"
  else
    echo "nvidia-smi: not found"
  fi

  # -- tools. nvcc is looked for on PATH, then in /usr/local/cuda/bin.
  if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH=/usr/local/cuda/bin:$PATH
  fi
  command -v nvcc >/dev/null || { echo "FATAL: no nvcc on PATH or in /usr/local/cuda/bin"; return 1; }
  export CUDACXX=${CUDACXX:-$(command -v nvcc)}
  echo "== nvcc: $CUDACXX: $(nvcc --version | tail -1)"
  echo "== c++: $(c++ --version 2>/dev/null | head -1 || echo 'not found')"
  echo "== python: $(command -v "$PYTHON"): $("$PYTHON" --version 2>&1)"

  # -- the wheels carried from the other machine (bench/fetch_wheels.sh)
  if ! ls "$WHEELS"/scipy_openblas32-*.whl >/dev/null 2>&1; then
    echo "FATAL: no scipy_openblas32 wheel in $WHEELS: run bench/fetch_wheels.sh where PyPI is reachable, and carry bench/wheels"
    return 1
  fi
  echo "== wheels:"; ls -l "$WHEELS"

  # -- pip, offline and hermetic: no config file, index or constraint of the machine applies;
  #    only bench/wheels and what is already installed.
  export PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
  unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIRE_VIRTUALENV PIP_NO_INDEX || true

  # -- the venv. --system-site-packages alone is not enough where $PYTHON is itself a venv (the
  #    GPU image's python3 is /opt/torch/.venv/bin/python3): a venv made from a venv sees the
  #    *base* interpreter's site-packages, not the parent venv's, where numpy, torch,
  #    scikit-build-core... live. So a .pth file adds $PYTHON's own site directories after the
  #    venv's (site.addsitedir: their .pth files are processed too); what is installed into the
  #    venv comes first on sys.path.
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv --system-site-packages "$VENV"; then
    # no ensurepip (a Debian/Ubuntu python without python3-venv): pip then comes from $PYTHON's
    # site-packages through the .pth file below
    echo "venv with pip failed; retrying --without-pip"
    rm -rf "$VENV"
    "$PYTHON" -m venv --system-site-packages --without-pip "$VENV"
  fi
  local py=$VENV/bin/python purelib
  purelib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$PYTHON" - "$purelib/zz_device_run_parent_site.pth" <<'EOF'
import site, sys
dirs = [d for d in site.getsitepackages() if d]
with open(sys.argv[1], "w") as fh:
    for d in dirs:
        fh.write(f"import site; site.addsitedir({d!r})\n")
print("== parent site directories added to the venv:", *dirs, sep="\n   ")
EOF
  local pip=("$py" -m pip)
  echo "== pip: $("${pip[@]}" --version)"

  # -- build requirements (pyproject.toml: scikit-build-core>=0.10, pybind11>=2.12,
  #    scipy-openblas32) and runtime ones (numpy, scipy, scipy-openblas32). With
  #    --no-build-isolation pip checks none of them: this does.
  local missing
  missing=$("$py" - <<'EOF'
import importlib, sys
from importlib.metadata import version, PackageNotFoundError
def v(s):
    return tuple(int(p) for p in (s.split(".") + ["0", "0"])[:2] if p.isdigit())
need = {"scikit-build-core": (0, 10), "pybind11": (2, 12)}
out = []
for name, minimum in need.items():
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    print(f"   {name}: {have}", file=sys.stderr)
    if have is None or v(have) < minimum:
        out.append(name)
for mod in ("numpy", "scipy"):
    m = importlib.import_module(mod)  # fails loudly: the image must have them
    print(f"   {mod}: {m.__version__} ({m.__file__})", file=sys.stderr)
print(" ".join(out))
EOF
)
  if [[ -n $missing ]]; then
    echo "== installing $missing from bench/wheels (the image's are missing or too old)"
    # shellcheck disable=SC2086
    "${pip[@]}" install --no-index --find-links "$WHEELS" $missing
  fi
  "$py" -c 'import scipy_openblas32' 2>/dev/null ||
    "${pip[@]}" install --no-index --find-links "$WHEELS" scipy-openblas32
  local cmake_bin
  cmake_bin=$("$py" -c 'import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, "cmake"))' 2>/dev/null || command -v cmake || true)
  echo "== cmake: ${cmake_bin:-not found}: $("${cmake_bin:-cmake}" --version 2>/dev/null | head -1)"
  echo "== ninja on PATH: $(command -v ninja || echo 'none') (build.log says which generator scikit-build-core used)"
  # Python's headers (FindPython's Development.Module): checked now rather than after a minute of build
  "$py" - <<'EOF'
import os, sys, sysconfig
inc = sysconfig.get_paths()["include"]
found = os.path.exists(os.path.join(inc, "Python.h"))
print(f"== Python.h in {inc}: {'found' if found else 'MISSING'}")
sys.exit(0 if found else "FATAL: no Python.h for this interpreter: the extension module cannot be built")
EOF

  # -- the build: CUDA required (FASTNPLM_CUDA=ON fails without nvcc), one architecture, every
  #    core. The CMake build folder is pyproject's build/{wheel_tag}: a rerun on the same (warm)
  #    machine rebuilds only what changed.
  export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
  echo "== building fastnplm (CUDA, architectures $ARCHS, $CMAKE_BUILD_PARALLEL_LEVEL jobs); log: build.log"
  local tb=$SECONDS
  if ! "${pip[@]}" install -v --no-index --find-links "$WHEELS" --no-build-isolation \
      -C cmake.define.FASTNPLM_CUDA=ON -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$ARCHS" \
      -C build.verbose=true . >"$OUT/build.log" 2>&1; then
    echo "FATAL: the build failed after $((SECONDS - tb)) s; the end of build.log:"
    tail -n 80 "$OUT/build.log"
    for f in build/*/CMakeFiles/CMakeConfigureLog.yaml build/*/CMakeFiles/CMakeError.log; do
      [[ -f $f ]] && cp "$f" "$OUT/"
    done
    return 1
  fi
  echo "== build and install: $((SECONDS - tb)) s"
  grep -E "fastnplm: |Building project with|Successfully installed" "$OUT/build.log" || true

  # -- what was built and whether it sees the device (from /, so that nothing in this tree
  #    shadows the installed package)
  (cd / && "$py" - "$VENV" <<'EOF'
import os, sys
import fastnplm
print("== fastnplm:", fastnplm.__file__)
print(fastnplm.build_info(), fastnplm.cuda_available())
if not os.path.realpath(fastnplm.__file__).startswith(os.path.realpath(sys.argv[1])):
    sys.exit("FATAL: this fastnplm is not the one installed in the venv")
if not fastnplm.cuda_built():
    sys.exit("FATAL: fastnplm was built without CUDA")
EOF
  )

  # -- the benchmark, within what is left of the budget
  local slug=smoke args=(--smoke)
  if [[ $SMOKE == 0 ]]; then
    slug=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)
    slug=$(printf '%s' "${slug:-unknown}" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '_' | sed 's/^_*//; s/_*$//')
    args=()
  fi
  local left=$((BUDGET - (SECONDS - t0)))
  if ((left < 30)); then left=30; fi
  echo "== bench/gpu.py ${args[*]} --out $OUT/gpu_$slug.json (stopped after $left s)"
  local rc=0
  PYTHONUNBUFFERED=1 timeout --kill-after=10 "$left" "$py" bench/gpu.py "${args[@]}" --out "$OUT/gpu_$slug.json" || rc=$?
  if ((rc == 124 || rc == 137)); then
    echo "== gpu.py stopped at the time budget: gpu_$slug.json holds the cases it finished"
  elif ((rc != 0)); then
    echo "== gpu.py exited with status $rc"
  fi
  echo "== done in $((SECONDS - t0)) s; in $OUT:"
  ls -l "$OUT"
  return "$rc"
}

# everything printed also goes to $OUT/device_run.log (a pipeline, so the log is complete when
# the script returns)
main 2>&1 | tee "$OUT/device_run.log"
