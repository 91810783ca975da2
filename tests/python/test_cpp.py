"""Builds the C++ core without Python, runs its C++ tests, installs it and builds a
downstream project with find_package(fastnplm): the embedding path trigger software uses."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    assert "PASS kernel_nplm_fit_moves_only_dot_products_per_cg_iteration" in out
    assert "PASS dense_cholesky_lauum_trsv_trmv_match_lapack" in out


# The same emulated tests built with -fsanitize=thread (a missing __syncthreads is a data race
# between the threads of an emulated block) and -fsanitize=address,undefined (out-of-bounds
# kernel accesses: device memory is heap memory in the emulation). The whole-fit tests
# (kernel_nplm_fit*) are left out here (thousands of launches; they run in the plain build above).
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
    assert " 0 failed" in out and "PASS kernel_mv_tmv_fused_match_cpu" in out and "PASS buffer_ops_match_cpu" in out


def test_core_builds_and_passes_without_cuda(tmp_path):
    # FASTNPLM_CUDA=OFF (a machine without nvcc): the stubs of fastnplm/cuda.hpp stand in for the
    # backend, and they must keep the public signatures; the C++ tests run on that build too
    cmake = shutil.which("cmake")
    import scipy_openblas32

    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run([cmake, "-S", ROOT, "-B", tmp_path, *gen, "-DCMAKE_BUILD_TYPE=Release", "-DFASTNPLM_CUDA=OFF",
          "-DFASTNPLM_BUILD_TESTS=ON", "-DFASTNPLM_BLAS=scipy-openblas",
          f"-DFASTNPLM_OPENBLAS_DIR={os.path.dirname(scipy_openblas32.__file__)}"])
    _run([cmake, "--build", tmp_path, "--parallel", "2", "--target", "fastnplm_tests"])
    out = _run([tmp_path / "tests" / "cpp" / "fastnplm_tests"])
    assert " 0 failed" in out and "PASS mlp_training_resumes_bit_for_bit_from_the_adam_state" in out
    assert "PASS cuda_entry_points_link_and_refuse_without_a_device" in out


@pytest.fixture(scope="module")
def installed(cpp_build):
    cmake, build, prefix, gen = cpp_build
    _run([cmake, "--install", build])
    return cpp_build


def test_installed_core_links_into_downstream_project(installed, tmp_path):
    cmake, build, prefix, gen = installed
    consumer = tmp_path / "consumer"
    _run([cmake, "-S", ROOT / "tests" / "cpp" / "consumer", "-B", consumer, *gen, f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run([cmake, "--build", consumer])
    out = _run([consumer / "consumer"])
    assert "converged = 1" in out


@pytest.fixture(scope="module")
def embed(installed, tmp_path_factory):
    """examples/cpp built against the installed core, as its README says."""
    cmake, _, prefix, gen = installed
    build = tmp_path_factory.mktemp("embed")
    _run([cmake, "-S", ROOT / "examples" / "cpp", "-B", build, *gen, f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run([cmake, "--build", build])
    return build / "embed"


def test_cpp_example_fits_saves_loads_and_python_reads_it(embed, tmp_path):
    import fastnplm

    path = tmp_path / "cpp_kernel.fnplm"
    out = _run([embed, "fit", path])
    assert "converged = 1" in out and "max |f_loaded - f_fit| on the data = 0" in out
    m = fastnplm.load_model(path)  # written by C++, read by the Python implementation
    assert m.kind == "kernel" and m.d == 1 and m.centers.shape == (40, 1) and m.sigma == 0.5
    assert m.metadata["source"] == "examples/cpp/embed.cpp" and m.metadata["t"] > 0
    x = np.linspace(0.0, 6.0, 25)
    events = tmp_path / "x.f64"
    x.astype("<f8").tofile(events)
    f_cpp = np.array(_run([embed, "eval", path, events]).split(), dtype=float)
    np.testing.assert_allclose(f_cpp, m.predict(x), rtol=1e-13, atol=1e-14)
    # the kernel sum by hand; alpha's terms cancel (|alpha| ~1e3 for |f| ~0.1), so the
    # rounding bound scales with sum_j |alpha_j k_j|
    k = np.exp(-(x[:, None] - m.centers[:, 0]) ** 2 / (2 * 0.25))
    assert np.all(np.abs(f_cpp - k @ m.alpha) <= 1e-14 * (np.abs(k) @ np.abs(m.alpha)))


def test_python_models_evaluate_the_same_in_cpp(embed, tmp_path):
    import fastnplm

    rng = np.random.default_rng(3)
    ref, dat = rng.normal(size=(3000, 3)) * [1, 2, 3] + 5, rng.normal(size=(300, 3)) * [1, 2, 3] + 5
    shift, scale = ref.mean(0), ref.std(0)
    fits = {
        "kernel": fastnplm.KernelNPLM(M=30, sigma=1.0, lam=1e-5, seed=0).fit((ref - shift) / scale, (dat - shift) / scale),
        "neural": fastnplm.NeuralNPLM(hidden=(4, 3), epochs=50, seed=1).fit((ref - shift) / scale, (dat - shift) / scale),
    }
    x = rng.normal(size=(40, 3)) * [1, 2, 3] + 5
    events = tmp_path / "x.f64"
    x.astype("<f8").tofile(events)
    for kind, fit in fits.items():
        path = tmp_path / f"{kind}.fnplm"
        fastnplm.save_model(fit, path, preprocessing=(shift, scale), metadata={"case": kind})
        f_cpp = np.array(_run([embed, "eval", path, events]).split(), dtype=float)
        np.testing.assert_allclose(f_cpp, fit.predict((x - shift) / scale), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(fastnplm.load_model(path).predict(x), f_cpp, rtol=1e-13, atol=1e-14)
    assert "events/s" in _run([embed, "rate", tmp_path / "kernel.fnplm", 1000])


def _configure(tmp_path, *args):
    proc = subprocess.run([shutil.which("cmake") or "cmake", "-S", str(ROOT), "-B", str(tmp_path / "b"),
                           "-DFASTNPLM_CUDA=OFF", *args], capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def test_cmake_without_a_system_lapack_finds_the_python_one_or_says_what_to_do(tmp_path):
    import ctypes.util
    if ctypes.util.find_library("lapack"):
        pytest.skip("a system LAPACK is installed: the default configure takes it")
    import scipy_openblas32  # noqa: F401  (installed with the package)
    rc, out = _configure(tmp_path, f"-DPython_EXECUTABLE={sys.executable}")  # the default, FASTNPLM_BLAS=auto
    assert rc == 0 and "using scipy-openblas32" in out, out
    rc, out = _configure(tmp_path / "no-python", "-DPython_EXECUTABLE=/bin/false")
    assert rc != 0 and "fastnplm needs LAPACK" in out and "apt-get install liblapack-dev" in out, out
    assert "-DFASTNPLM_BLAS=scipy-openblas" in out and "Could NOT find BLAS" not in out
