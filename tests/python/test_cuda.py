"""The CUDA backend without a GPU: the Python switches, and a static check of the compiled
kernels (ptxas resource usage: no local-memory spills). The kernels' numerics are checked by
the emulated C++ tests (tests/cuda_emu, run from test_cpp.py, also under TSan and ASan)."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import fastnplm
from fastnplm import _core

ROOT = Path(__file__).resolve().parents[2]
CUDA_SOURCES = ["gauss.cu", "vector.cu", "dense.cu", "features.cu", "mlp.cu", "backend.cu"]


def _problem(seed=0, n_r=2000, n_d=200, d=2):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_r, d)), rng.normal(0.3, 1.0, size=(n_d, d))


# ---- Python switches ----

def test_build_info_reports_the_cuda_build():
    info = fastnplm.build_info()
    assert info["cuda_built"] is fastnplm.cuda_built() is bool(_core.cuda_built())
    if info["cuda_built"]:
        assert info["cuda_architectures"] and all(a.isdigit() for a in info["cuda_architectures"])
        assert {"fused_kernel", "mv_kernel", "tmv_kernel", "potrf_diag_kernel"} <= set(info["cuda_kernels"])
    else:
        assert info["cuda_architectures"] == [] and info["cuda_kernels"] == []


def test_cuda_available_is_a_bool_and_implies_built():
    avail = fastnplm.cuda_available()
    assert isinstance(avail, bool)
    assert not avail or fastnplm.cuda_built()


def test_bad_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend"):
        fastnplm.KernelNPLM(M=10, sigma=1.0, backend="gpu")


@pytest.mark.skipif(fastnplm.cuda_available(), reason="a CUDA device is present")
def test_cuda_backend_without_a_device_is_a_clear_error():
    ref, dat = _problem()
    with pytest.raises(RuntimeError, match="backend='cuda'"):
        fastnplm.KernelNPLM(M=20, sigma=1.0, backend="cuda").fit(ref, dat)
    # the compiled layer refuses as well (the Python check comes first in normal use)
    with pytest.raises(RuntimeError, match="CUDA"):
        _core.fit_kernel(ref, np.full(len(ref), 0.1), dat, ref[:5].copy(), None, 1.0, [1e-6], "newton-step", 1e-4,
                         100, 1e-12, 10, 1e-13, 1, 0, "cuda")


def test_auto_backend_falls_back_to_cpu_with_identical_results():
    ref, dat = _problem(1)
    a = fastnplm.KernelNPLM(M=40, sigma=1.0, lam=1e-5, backend="auto").fit(ref, dat)
    c = fastnplm.KernelNPLM(M=40, sigma=1.0, lam=1e-5, backend="cpu").fit(ref, dat)
    assert c.backend == "cpu"
    if not fastnplm.cuda_available():
        assert a.backend == "cpu" and a.t == c.t


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_fit_agrees_across_backends(backend):
    if backend == "cuda" and not fastnplm.cuda_available():
        pytest.skip("no CUDA device (the kernels are checked by the emulated C++ tests instead)")
    ref, dat = _problem(2)
    # tight CG tolerance: the loose default stops CG at an iterate that depends on rounding
    kw = dict(M=40, sigma=1.0, lam=1e-4, cg_tol=1e-11, hessian="stream")
    got = fastnplm.KernelNPLM(backend=backend, **kw).fit(ref, dat)
    want = fastnplm.KernelNPLM(backend="cpu", **kw).fit(ref, dat)
    assert got.backend == backend
    assert got.t == pytest.approx(want.t, rel=1e-10)


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_resident_features_match_the_per_call_primitive(backend):
    # the calibration's batched toys keep the stored reference features in the backend's memory
    # (on CUDA: copied to the device once instead of once per batch); the sums are the same
    if backend == "cuda" and not fastnplm.cuda_available():
        pytest.skip("no CUDA device (the emulated C++ test checks the device path and its copies)")
    rng = np.random.default_rng(3)
    f, w = rng.normal(scale=0.1, size=(301, 13)), rng.uniform(0.5, 1.5, size=301)
    store = fastnplm._core.ResidentFeatures(f, w, 2, backend)
    for b in (1, 7):
        v = rng.normal(scale=0.5, size=(13, b))
        want = fastnplm._core.features_expm1_sum(f, v, w, 2, "cpu")
        got = store.expm1_sum(v)
        if backend == "cpu":
            assert np.array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)
    with pytest.raises(ValueError, match="one row per feature column"):
        store.expm1_sum(np.zeros((12, 2)))
    with pytest.raises(ValueError, match="w must be a 1-D array of length 301"):
        fastnplm._core.ResidentFeatures(f, w[:-1], 2, backend)


def test_cuda_spectral_and_nuisance_switches():
    ref, dat = _problem()
    model = fastnplm.KernelNPLM(M=20, sigma=1.0, hessian="spectral", backend="cuda")
    if not fastnplm.cuda_available():
        with pytest.raises(RuntimeError, match="backend='cuda'"):
            model.fit(ref, dat)
    with pytest.raises(ValueError, match="nuisances run on backend='cpu'"):
        fastnplm.KernelNPLM(M=20, sigma=1.0, backend="cuda").fit(ref, dat, nuisances=[fastnplm.Nuisance("n", 0.1)])


def test_default_backend_is_the_cpu():
    # the CUDA kernels have not run on a GPU yet: nothing moves there unless asked
    assert fastnplm.KernelNPLM().backend == "cpu" and fastnplm.NeuralNPLM().backend == "cpu"


def test_neural_backend_switches():
    ref, dat = _problem(n_r=500, n_d=50)
    with pytest.raises(ValueError, match="unknown backend"):
        fastnplm.NeuralNPLM(backend="gpu")
    kw = dict(hidden=(3,), epochs=30, seed=1)
    for dtype in ("float64", "float32"):
        # both precisions reach the CUDA trainer (and its loss + gradient for L-BFGS-B)
        cuda = fastnplm.NeuralNPLM(backend="cuda", dtype=dtype, **kw)
        assert cuda.backend == "cuda" and cuda.dtype == dtype
        c = fastnplm.NeuralNPLM(backend="cpu", dtype=dtype, **kw).fit(ref, dat)
        if fastnplm.cuda_available():
            got = cuda.fit(ref, dat)
            assert got.backend == "cuda" and got.dtype == dtype
            assert got.t == pytest.approx(c.t, rel=1e-6 if dtype == "float32" else 1e-9)
        else:
            for opt in ("adam", "lbfgsb"):
                with pytest.raises(RuntimeError, match="backend='cuda'"):
                    fastnplm.NeuralNPLM(backend="cuda", dtype=dtype, optimizer=opt, **kw).fit(ref, dat)
                # the compiled layer takes both precisions to the CUDA backend, and refuses only
                # for want of a device
                with pytest.raises(RuntimeError, match="CUDA"):
                    _core.mlp_loss_grad(ref, np.full(len(ref), 0.1), [dat], [3], np.zeros((1, 13)), True, 1, dtype,
                                        "cuda")
                with pytest.raises(RuntimeError, match="CUDA"):
                    _core.mlp_train(ref, np.full(len(ref), 0.1), [dat], [3], np.zeros((1, 13)), 9.0, 1e-3, 0.9, 0.999,
                                    1e-8, 5, 0, 1, dtype, "cuda")
            a = fastnplm.NeuralNPLM(backend="auto", dtype=dtype, **kw).fit(ref, dat)
            assert a.backend == c.backend == "cpu" and a.t == c.t


def test_calibrate_backend_switches(tmp_path):
    rng = np.random.default_rng(3)
    ref, pool = rng.normal(size=(2000, 1)), rng.normal(size=(6000, 1))
    model = fastnplm.KernelNPLM(M=20, sigma=1.0, lam=1e-5, center_pool="reference")
    with pytest.raises(ValueError, match="unknown backend"):
        fastnplm.calibrate(model, ref, pool, toys=2, n_expected=100, backend="tpu")
    if not fastnplm.cuda_available():
        with pytest.raises(RuntimeError, match="backend='cuda'"):
            fastnplm.calibrate(model, ref, pool, toys=2, n_expected=100, backend="cuda")
        with pytest.raises(RuntimeError, match="backend='cuda'"):
            fastnplm.calibrate(fastnplm.NeuralNPLM(hidden=(2,), epochs=5), ref, pool, toys=2, n_expected=100,
                               backend="cuda")
    a = fastnplm.calibrate(model, ref, pool, toys=4, n_expected=100, backend="auto", store=tmp_path / "a.fnplm")
    c = fastnplm.calibrate(model, ref, pool, toys=4, n_expected=100, store=tmp_path / "c.fnplm")
    np.testing.assert_array_equal(a.t, c.t)
    # a CPU store's header is the one earlier versions wrote (no backend key), and the
    # observed-data model carries the toys' backend
    assert "backend" not in fastnplm.load_calibration(tmp_path / "a.fnplm").settings["model"]
    assert a.model().backend in ("cpu", "auto")


def test_gpu_bench_script_runs_its_scenarios_on_the_cpu(tmp_path):
    # bench/gpu.py is for GPU hosts; --smoke runs the same code on the CPU at tiny sizes
    import sys
    script = ROOT / "bench" / "gpu.py"
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, script, "--smoke", "--out", out], capture_output=True, text=True,
                          cwd=ROOT / "bench", timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    rows = doc["cases"]["cpu"]
    assert {"kernel_fit_1d", "kernel_fit_5d", "neural_epochs_1d", "neural_epochs_5d", "toys_1d",
            "neural_toys_1d_float32", "neural_toys_1d_float64", "kernel_fit_5d_M20000"} <= set(rows)
    assert all(r["seconds"] > 0 for r in rows.values()) and rows["toys_1d"]["path"] == "spectral"
    if not fastnplm.cuda_available():  # without a device it says so, never a figure
        proc = subprocess.run([sys.executable, script], capture_output=True, text=True, cwd=ROOT / "bench")
        assert proc.returncode == 2 and "not yet measured on a GPU" in proc.stderr


# ---- static check of the compiled kernels ----

def _architectures():
    env = os.environ.get("FASTNPLM_CUDA_ARCHITECTURES")
    if env:
        return [a for a in env.split(";") if a]
    built = fastnplm.build_info()["cuda_architectures"]
    return built or ["80", "90"]


def _parse_ptxas(text):
    """{(kernel, arch): {registers, shared_bytes, stack_bytes, spill_stores, spill_loads}} from ptxas -v."""
    out, current = {}, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\w+)' for '(sm_\d+)'", line)
        if m:
            current = (m.group(1), m.group(2))
            out[current] = {"mangled": m.group(1)}
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            out[current].update(stack_bytes=int(m.group(1)), spill_stores=int(m.group(2)),
                                spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            out[current]["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            out[current]["static_shared_bytes"] = int(s.group(1)) if s else 0
    return out


def _kernel_names_in_source():
    """The names lists of cuda/*.cu (backend.cu's kernel_names() appends the others)."""
    names = []
    for src in CUDA_SOURCES:
        for block in re.findall(r"names = \{(.*?)\};", (ROOT / "cuda" / src).read_text(), re.S):
            names += re.findall(r'"(\w+)"', block)
    return names


def test_compiled_kernels_do_not_spill_and_resource_usage_is_recorded():
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA kernels cannot be compiled on this machine")
    archs = _architectures()
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    usage = {}
    for src in CUDA_SOURCES:
        proc = subprocess.run(
            [nvcc, "-O3", "-std=c++17", "--resource-usage", *gencode, "-I", ROOT / "cuda", "-I",
             ROOT / "cpp" / "include", "-I", ROOT / "cpp" / "src", "-c", ROOT / "cuda" / src, "-o", os.devnull],
            capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        for (mangled, arch), rec in _parse_ptxas(proc.stdout + proc.stderr).items():
            names = [n for n in _kernel_names_in_source() if f"{len(n)}{n}E" in mangled]
            assert len(names) == 1, f"{mangled}: not exactly one name of the kernel lists in cuda/*.cu"
            usage.setdefault(names[0], {"source": f"cuda/{src}"})[arch] = rec
    # the list exported to build_info() names exactly the compiled kernels
    assert sorted(usage) == sorted(_kernel_names_in_source())
    for name, per_arch in usage.items():
        for a in archs:
            rec = per_arch[f"sm_{a}"]
            assert rec["spill_stores"] == 0 and rec["spill_loads"] == 0, f"{name} spills on sm_{a}: {rec}"
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    doc = {"what": "ptxas resource usage of the CUDA kernels (static: no GPU involved)", "nvcc": version,
           "flags": "-O3 -std=c++17", "architectures": [f"sm_{a}" for a in archs], "kernels": usage}
    out = ROOT / "bench" / "results" / "cuda_resource_usage.json"
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def test_bench_device_reaches_the_models():
    # fastnplm bench --device cuda must time the CUDA backend, not the CPU under a cuda label
    from fastnplm import _bench
    if fastnplm.cuda_available():
        pytest.skip("a device is present: the CLI runs the scenarios on it")
    with pytest.raises(RuntimeError, match="backend='cuda'"):
        _bench.standard(quick=True, threads=1, device="cuda")
