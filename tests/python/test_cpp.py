"""Builds the C++ core without Python, runs its C++ tests, installs it and builds a
downstream project with find_package(fastnplm): the embedding path trigger software uses."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@pytest.fixture(scope="module")
def cpp_build(tmp_path_factory):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail("cmake not found: install the test extras (pip install .[test])")
    import scipy_openblas32

    tmp = tmp_path_factory.mktemp("cpp")
    build, prefix = tmp / "build", tmp / "prefix"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run([cmake, "-S", ROOT, "-B", build, *gen, "-DCMAKE_BUILD_TYPE=Release", "-DFASTNPLM_BUILD_TESTS=ON",
          "-DFASTNPLM_BLAS=scipy-openblas", f"-DFASTNPLM_OPENBLAS_DIR={os.path.dirname(scipy_openblas32.__file__)}",
          f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DPython_EXECUTABLE={sys.executable}"])
    _run([cmake, "--build", build, "--parallel", "2"])
    return cmake, build, prefix, gen


def test_cpp_unit_tests(cpp_build):
    _, build, _, _ = cpp_build
    # the plain tests; the sanitizer builds of the emulated CUDA tests run below
    out = _run([shutil.which("ctest") or "ctest", "--test-dir", build, "--output-on-failure", "-LE", "sanitizer"])
    assert "100% tests passed" in out
    # and each C++ test by name, so a silently empty registry cannot pass
    detail = _run([build / "tests" / "cpp" / "fastnplm_tests"])
    assert " 0 failed" in detail and "PASS newton_step_matches_dense_solution" in detail


def test_cuda_kernels_emulated_on_the_cpu(cpp_build):
    # the cuda/*.cu sources compiled as C++ against tests/cuda_emu, against the CPU backend and LAPACK
    _, build, _, _ = cpp_build
    out = _run([build / "tests" / "cuda_emu" / "fastnplm_cuda_emu_tests"])
    assert " 0 failed" in out and "PASS kernel_nplm_fit_on_emulated_cuda_matches_cpu" in out
    assert "PASS dense_cholesky_lauum_trsv_trmv_match_lapack" in out


# The same emulated tests built with -fsanitize=thread (a missing __syncthreads is a data race
# between the threads of an emulated block) and -fsanitize=address,undefined (out-of-bounds
# kernel accesses: device memory is heap memory in the emulation). The whole-fit test is left
# out here (thousands of launches; it runs in the plain build above).
@pytest.mark.parametrize("sanitizer,options", [
    ("tsan", {"TSAN_OPTIONS": "halt_on_error=1:exitcode=66"}),
    ("asan", {"ASAN_OPTIONS": "halt_on_error=1:detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}),
])
def test_cuda_kernels_emulated_under_sanitizers(cpp_build, sanitizer, options):
    _, build, _, _ = cpp_build
    exe = build / "tests" / "cuda_emu" / f"fastnplm_cuda_emu_{sanitizer}"
    if not exe.exists():
        pytest.skip(f"the C++ toolchain has no {sanitizer} runtime (tests/cuda_emu/CMakeLists.txt checks for it)")
    env = {**os.environ, **options}
    out = _run([exe, "-kernel_nplm_fit"], env=env)
    assert " 0 failed" in out and "PASS kernel_mv_tmv_fused_match_cpu" in out


def test_installed_core_links_into_downstream_project(cpp_build, tmp_path):
    cmake, build, prefix, gen = cpp_build
    _run([cmake, "--install", build])
    consumer = tmp_path / "consumer"
    _run([cmake, "-S", ROOT / "tests" / "cpp" / "consumer", "-B", consumer, *gen, f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run([cmake, "--build", consumer])
    out = _run([consumer / "consumer"])
    assert "converged = 1" in out
