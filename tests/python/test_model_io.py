"""Model files (format v1, cpp/include/fastnplm/model.hpp): round trips, evaluation with the
stored preprocessing, and refusal of damaged files. The C++ reader and writer are checked
against this implementation in test_cpp.py."""
import struct

import numpy as np
import pytest

import fastnplm


@pytest.fixture(scope="module")
def fits():
    rng = np.random.default_rng(0)
    ref, dat = rng.normal(size=(2000, 2)), rng.normal(0.2, 1.0, size=(200, 2))
    return {"kernel": fastnplm.KernelNPLM(M=20, sigma=1.0, lam=1e-5).fit(ref, dat),
            "neural": fastnplm.NeuralNPLM(hidden=(3,), epochs=20, seed=0).fit(ref, dat)}


@pytest.mark.parametrize("kind", ["kernel", "neural"])
def test_round_trip_keeps_every_number_and_f(fits, kind, tmp_path):
    fit = fits[kind]
    shift, scale = np.array([1.0, -2.0]), np.array([2.0, 0.5])
    path = tmp_path / "m.fnplm"
    fastnplm.save_model(fit, path, preprocessing=(shift, scale), metadata={"note": "x"})
    m = fastnplm.load_model(path)
    assert m.kind == kind and m.d == 2 and m.metadata["note"] == "x" and m.metadata["t"] == fit.t
    np.testing.assert_array_equal(m.shift, shift)
    np.testing.assert_array_equal(m.scale, scale)
    if kind == "kernel":
        np.testing.assert_array_equal(m.centers, fit.centers)
        np.testing.assert_array_equal(m.alpha, fit.alpha)
        assert m.sigma == fit.sigma
    else:
        np.testing.assert_array_equal(m.params, fit.params)
        assert m.hidden == fit.hidden
    x = np.random.default_rng(1).normal(size=(50, 2)) * 3
    np.testing.assert_array_equal(m.predict(x), fit.predict((x - shift) / scale))


def test_fitted_scalers_are_stored_as_the_preprocessing(fits, tmp_path):
    rng = np.random.default_rng(2)
    ref = rng.normal(3.0, 2.0, size=(500, 2))
    for scaler in (fastnplm.preprocessing.Standardize(), fastnplm.preprocessing.DivideByMean()):
        with pytest.raises(ValueError, match="not fitted"):
            fastnplm.save_model(fits["kernel"], tmp_path / "m", preprocessing=scaler)
        scaler.fit(ref)
        fastnplm.save_model(fits["kernel"], tmp_path / "m", preprocessing=scaler)
        m = fastnplm.load_model(tmp_path / "m")
        np.testing.assert_array_equal(m.predict(ref[:20]), fits["kernel"].predict(scaler.transform(ref[:20])))


def test_file_layout_is_the_documented_one(fits, tmp_path):
    fit = fits["kernel"]
    path = tmp_path / "m.fnplm"
    fastnplm.save_model(fit, path, metadata={})
    b = path.read_bytes()
    assert b[:8] == b"FNPLMMOD"
    version, kind, d, meta_len = struct.unpack_from("<IIQQ", b, 8)
    assert (version, kind, d) == (1, 1, 2)
    off = 32 + meta_len
    assert struct.unpack_from("<I", b, off) == (0,)
    m, sigma = struct.unpack_from("<Qd", b, off + 4)
    assert m == 20 and sigma == fit.sigma
    centers = np.frombuffer(b, "<f8", 20 * 2, off + 20).reshape(20, 2)
    alpha = np.frombuffer(b, "<f8", 20, off + 20 + 320)
    np.testing.assert_array_equal(centers, fit.centers)
    np.testing.assert_array_equal(alpha, fit.alpha)
    assert len(b) == off + 20 + 320 + 160 + 8


def test_damaged_files_are_refused(fits, tmp_path):
    path = tmp_path / "m.fnplm"
    fastnplm.save_model(fits["neural"], path)
    good = path.read_bytes()
    for data, why in [(good[:-9], "hash mismatch"), (good[:40] + bytes([good[40] ^ 1]) + good[41:], "hash mismatch"),
                      (b"NOTMODEL" + good[8:], "magic"), (good[:8] + b"\x02" + good[9:], "version 2"),
                      (b"", "magic")]:
        path.write_bytes(data)
        with pytest.raises(ValueError, match=why):
            fastnplm.load_model(path)


def test_bad_arguments(fits, tmp_path):
    with pytest.raises(TypeError, match="cannot save a dict"):
        fastnplm.save_model({"alpha": 1}, tmp_path / "m")
    with pytest.raises(ValueError, match="scale > 0"):
        fastnplm.save_model(fits["kernel"], tmp_path / "m", preprocessing=([0, 0], [1, 0]))
    with pytest.raises(TypeError, match="preprocessing must be a fitted"):
        fastnplm.save_model(fits["kernel"], tmp_path / "m", preprocessing="standardise")
    with pytest.raises(TypeError, match="JSON-serialisable"):
        fastnplm.save_model(fits["kernel"], tmp_path / "m", metadata={"a": object()})
    fastnplm.save_model(fits["kernel"], tmp_path / "m")
    with pytest.raises(ValueError, match="3 features but the reference has 2"):
        fastnplm.load_model(tmp_path / "m").predict(np.zeros((4, 3)))
