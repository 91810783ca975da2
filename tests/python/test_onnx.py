"""ONNX export of f(x), run by onnxruntime, against fastnplm's own evaluation."""
import numpy as np
import onnxruntime as ort
import pytest

import fastnplm


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["f"], {"x": x})[0]


@pytest.mark.parametrize("kind", ["kernel", "neural"])
def test_onnx_matches_the_core(kind, tmp_path):
    rng = np.random.default_rng(0)
    ref, dat = rng.normal(size=(3000, 3)) * 2 + 1, rng.normal(size=(300, 3)) * 2 + 1.3
    shift, scale = ref.mean(0), ref.std(0)
    pre = lambda v: (v - shift) / scale  # noqa: E731
    if kind == "kernel":
        fit = fastnplm.KernelNPLM(M=50, sigma=1.0, lam=1e-5, seed=0).fit(pre(ref), pre(dat))
    else:
        fit = fastnplm.NeuralNPLM(hidden=(5, 4), epochs=200, seed=0).fit(pre(ref), pre(dat))
    path = tmp_path / "f.onnx"
    fastnplm.io.export_onnx(fit, path, preprocessing=(shift, scale))
    x = rng.normal(size=(200, 3)) * 2 + 1
    f_onnx, f_core = _run(path, x), fit.predict(pre(x))
    assert f_onnx.shape == (200,) and f_onnx.dtype == np.float64
    if kind == "kernel":
        # the expanded squared distance rounds to ~1e-16 |x|^2; alpha's terms cancel, so the
        # bound scales with sum_j |alpha_j k_j|
        k = np.exp(-((pre(x)[:, None, :] - fit.centers[None]) ** 2).sum(-1) / 2)
        assert np.all(np.abs(f_onnx - f_core) <= 1e-12 * (k @ np.abs(fit.alpha)))
    else:
        np.testing.assert_allclose(f_onnx, f_core, rtol=1e-12, atol=1e-13)
    # the same from a saved model file, which carries its own preprocessing
    fastnplm.save_model(fit, tmp_path / "f.fnplm", preprocessing=(shift, scale))
    fastnplm.io.export_onnx(fastnplm.load_model(tmp_path / "f.fnplm"), tmp_path / "g.onnx")
    np.testing.assert_array_equal(_run(tmp_path / "g.onnx", x), f_onnx)
