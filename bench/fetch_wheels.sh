#!/usr/bin/env bash
# Fills bench/wheels/ (git-ignored) with the wheels bench/device_run.sh installs on the GPU
# machine, which reaches no package index. Run it here, where PyPI is reachable, from anywhere
# in the repository; then name bench/wheels in the device tool's `carry`.
#
#   scipy-openblas32   build requirement (CMake links its libscipy_openblas) and runtime
#                      dependency of fastnplm: not in the GPU image. Always installed.
#   scikit-build-core, pybind11, packaging, pathspec
#                      build requirements the image has; installed from here only where the
#                      image's are missing or older than pyproject.toml asks (device_run.sh
#                      checks). Pure Python, ~1 MB together.
# numpy and scipy (runtime), cmake and ninja (build) are the image's and are not carried.
#
# All of these are py3-none wheels, so the target's Python version only matters to pip's
# filter: DEVICE_PYTHON_VERSION (default 3.12: the GPU image's python3 is 3.12).
set -euo pipefail

cd "$(dirname "$0")/.."
WHEELS=bench/wheels
PYVER=${DEVICE_PYTHON_VERSION:-3.12}
# the scipy-openblas32 this project's CPU results were measured with (bench/results/*.json)
OPENBLAS=${SCIPY_OPENBLAS32:-scipy-openblas32==0.3.34.481.3}

mkdir -p "$WHEELS"
rm -f "$WHEELS"/*.whl  # one version of each: two of a name would make pip choose
python3 -m pip download --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$WHEELS" \
  "$OPENBLAS" "scikit-build-core>=0.10" "pybind11>=2.12" "packaging>=23.2" "pathspec>=0.12"
ls -l "$WHEELS"
du -sh "$WHEELS"
