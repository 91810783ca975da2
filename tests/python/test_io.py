"""fastnplm.load on every format, its errors, and the reference-fitted preprocessing."""
import gzip
import json

import numpy as np
import pytest

import fastnplm
from fastnplm.preprocessing import DivideByMean, Standardize, scaler_from_dict

NAMES = ["pt1", "pt2", "eta1"]


@pytest.fixture
def events():
    rng = np.random.default_rng(0)
    return np.column_stack([rng.exponential(20, 50), rng.exponential(15, 50), rng.normal(0, 1.2, 50)])


def _write_csv(path, x, names=NAMES, opener=open):
    with opener(path, "wt") as fh:
        if names:
            fh.write(",".join(names) + "\n")
        for row in x:
            fh.write(",".join(repr(float(v)) for v in row) + "\n")


def test_npy_npz_csv_roundtrip(tmp_path, events):
    np.save(tmp_path / "a.npy", events)
    np.testing.assert_array_equal(fastnplm.load(tmp_path / "a.npy"), events)
    np.testing.assert_array_equal(fastnplm.load(tmp_path / "a.npy", columns=[2, 0]), events[:, [2, 0]])
    np.save(tmp_path / "one.npy", events[:, 0])                    # 1-D: n events of one feature
    assert fastnplm.load(tmp_path / "one.npy").shape == (50, 1)
    np.savez(tmp_path / "f.npz", **{n: events[:, i] for i, n in enumerate(NAMES)})
    np.testing.assert_array_equal(fastnplm.load(tmp_path / "f.npz", columns=["eta1", "pt1"]), events[:, [2, 0]])
    np.savez(tmp_path / "m.npz", x=events, y=events[:3])
    np.testing.assert_array_equal(fastnplm.load(tmp_path / "m.npz", tree="x"), events)
    with pytest.raises(ValueError, match="holds 2 arrays .*x, y.*tree="):
        fastnplm.load(tmp_path / "m.npz")
    _write_csv(tmp_path / "a.csv", events)
    _write_csv(tmp_path / "a.csv.gz", events, opener=gzip.open)
    _write_csv(tmp_path / "nohead.csv", events, names=None)
    for name in ("a.csv", "a.csv.gz"):
        out = fastnplm.load(tmp_path / name, columns=["eta1", "pt2"])
        np.testing.assert_array_equal(out, events[:, [2, 1]])       # repr() round-trips floats exactly
        assert out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(fastnplm.load(tmp_path / "nohead.csv", columns=[1]), events[:, [1]])
    structured = np.zeros(50, dtype=[("pt1", "f4"), ("n", "i4")])
    structured["pt1"], structured["n"] = events[:, 0], np.arange(50)
    np.save(tmp_path / "s.npy", structured)
    np.testing.assert_array_equal(fastnplm.load(tmp_path / "s.npy", columns=["n"]).ravel(), np.arange(50))


def test_bundled_cms_csv_non_numeric_column_is_named():
    from fastnplm.io.datasets import cms_dimuon_path
    path = cms_dimuon_path("doublemu")
    with pytest.raises(TypeError, match="'Type1', 'Type2'.*not numeric"):
        fastnplm.load(path)
    x = fastnplm.load(path, columns=["pt1", "pt2", "M"])
    assert x.shape == (1007, 3) and (x[:, 0] > 0).all()


def test_errors_name_what_is_wrong(tmp_path, events):
    _write_csv(tmp_path / "a.csv", events)
    with pytest.raises(ValueError, match=r"columns 'mass', 'phi' not found; available: pt1, pt2, eta1"):
        fastnplm.load(tmp_path / "a.csv", columns=["pt1", "mass", "phi"])
    with pytest.raises(ValueError, match="cannot tell the format.*known: .npy"):
        fastnplm.load(tmp_path / "a.xlsx")
    with pytest.raises(FileNotFoundError):
        fastnplm.load(tmp_path / "nothing.npy")
    np.save(tmp_path / "a.npy", events)
    with pytest.raises(ValueError, match="without column names"):
        fastnplm.load(tmp_path / "a.npy", columns=["pt1"])
    with pytest.raises(ValueError, match="column position 7 not found"):
        fastnplm.load(tmp_path / "a.npy", columns=[7])
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(TypeError, match="not numeric"):
        fastnplm.load(tmp_path / "s.npy")


def test_parquet(tmp_path, events):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    table = pa.table({"pt1": events[:, 0], "pt2": events[:, 1], "eta1": events[:, 2].astype(np.float32),
                      "tag": ["x"] * 50, "hits": [[1.0, 2.0]] * 25 + [[1.0]] * 25})
    pq.write_table(table, tmp_path / "a.parquet")
    out = fastnplm.load(tmp_path / "a.parquet", columns=["pt2", "eta1"])
    np.testing.assert_array_equal(out, np.column_stack([events[:, 1], events[:, 2].astype(np.float32)]))
    with pytest.raises(TypeError, match="column 'tag'.*not numeric"):
        fastnplm.load(tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="column 'hits'.*jagged"):
        fastnplm.load(tmp_path / "a.parquet", columns=["pt1", "hits"])
    with pytest.raises(ValueError, match="'nope' not found; available: pt1, pt2, eta1, tag, hits"):
        fastnplm.load(tmp_path / "a.parquet", columns=["nope"])


def test_hdf5(tmp_path, events):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["events"] = events
        g = f.create_group("features")
        for i, n in enumerate(NAMES):
            g[n] = events[:, i]
        rec = np.zeros(50, dtype=[("pt1", "f8"), ("eta1", "f8")])
        rec["pt1"], rec["eta1"] = events[:, 0], events[:, 2]
        f["table"] = rec
    path = tmp_path / "a.h5"
    np.testing.assert_array_equal(fastnplm.load(path, tree="events"), events)
    np.testing.assert_array_equal(fastnplm.load(path, tree="features", columns=["eta1", "pt1"]), events[:, [2, 0]])
    np.testing.assert_array_equal(fastnplm.load(path, tree="table", columns=["eta1"]), events[:, [2]])
    with pytest.raises(ValueError, match="pass tree="):
        fastnplm.load(path)
    with pytest.raises(ValueError, match="dataset 'phi' not found; available: eta1, pt1, pt2"):
        fastnplm.load(path, tree="features", columns=["phi"])


def test_root(tmp_path, events):
    uproot = pytest.importorskip("uproot")
    ak = pytest.importorskip("awkward")
    with uproot.recreate(tmp_path / "a.root") as f:
        t = f.mktree("Events", {"pt1": np.float64, "pt2": np.float64, "eta1": np.float32, "nmu": np.int32})
        t.extend({"pt1": events[:, 0], "pt2": events[:, 1], "eta1": events[:, 2].astype(np.float32),
                  "nmu": np.arange(50, dtype=np.int32)})
        j = f.mktree("Jagged", {"muon_pt": "var * float64"})
        j.extend({"muon_pt": ak.Array([[1.0, 2.0], [3.0]] * 25)})
    path = tmp_path / "a.root"
    assert uproot.open(path).classnames()["Events;1"] == "TTree"
    with pytest.raises(ValueError, match="holds 2 trees.*pass tree="):
        fastnplm.load(path)
    out = fastnplm.load(path, columns=["eta1", "pt1", "nmu"], tree="Events")
    np.testing.assert_array_equal(out, np.column_stack([events[:, 2].astype(np.float32), events[:, 0], np.arange(50)]))
    with pytest.raises(ValueError, match="branch 'muon_pt'.*jagged"):
        fastnplm.load(path, columns=["muon_pt"], tree="Jagged")
    with pytest.raises(ValueError, match="branch 'phi1' not found; available: pt1, pt2, eta1, nmu"):
        fastnplm.load(path, columns=["phi1"], tree="Events")
    with uproot.recreate(tmp_path / "b.root") as f:
        f["ntuple"] = {"x": events[:, 0]}                               # uproot's default: an RNTuple
    np.testing.assert_array_equal(fastnplm.load(tmp_path / "b.root"), events[:, [0]])


def test_missing_optional_dependency_names_the_extra(monkeypatch, tmp_path):
    import sys
    for module, ext, extra in (("uproot", "root", "root"), ("h5py", "h5", "hdf5"), ("pyarrow", "parquet", "parquet")):
        monkeypatch.setitem(sys.modules, module, None)              # makes "import module" fail
        monkeypatch.setitem(sys.modules, f"{module}.parquet", None)
        (tmp_path / f"a.{ext}").write_bytes(b"x")
        with pytest.raises(ImportError, match=rf"needs the optional package '{module}'.*pip install 'fastnplm\[{extra}\]'"):
            fastnplm.load(tmp_path / f"a.{ext}")


def test_standardize_fitted_on_reference_only(tmp_path):
    rng = np.random.default_rng(1)
    ref = rng.normal([5.0, -2.0], [3.0, 0.5], size=(4000, 2))
    data = rng.normal([6.0, -2.0], [3.0, 0.7], size=(300, 2))
    pre = Standardize().fit(ref)
    z_ref, z_data = pre.transform(ref), pre.transform(data)
    np.testing.assert_allclose(z_ref.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z_ref.std(axis=0), 1, rtol=1e-12)
    # the data go through the reference's numbers, not their own
    np.testing.assert_allclose(z_data, (data - ref.mean(axis=0)) / ref.std(axis=0), rtol=1e-13)
    np.testing.assert_allclose(pre.inverse_transform(z_data), data, rtol=1e-13)
    w = rng.uniform(0.5, 2.0, 4000)
    wpre = Standardize().fit(ref, weights=w)
    mean = np.average(ref, axis=0, weights=w)
    np.testing.assert_allclose(wpre.offset_, mean, rtol=1e-13)
    np.testing.assert_allclose(wpre.scale_, np.sqrt(np.average((ref - mean) ** 2, axis=0, weights=w)), rtol=1e-13)
    # serialisation: dict, JSON file, and the kind-dispatching reader
    back = scaler_from_dict(json.loads(json.dumps(pre.to_dict())))
    assert isinstance(back, Standardize)
    np.testing.assert_array_equal(back.transform(data), z_data)
    pre.save(tmp_path / "pre.json")
    np.testing.assert_array_equal(Standardize.load(tmp_path / "pre.json").transform(data), z_data)


def test_divide_by_mean_and_errors():
    rng = np.random.default_rng(2)
    ref = rng.exponential([20.0, 40.0], size=(1000, 2))
    pre = DivideByMean().fit(ref)
    np.testing.assert_allclose(pre.transform(ref).mean(axis=0), 1, rtol=1e-13)
    np.testing.assert_allclose(pre.transform(ref[:5]), ref[:5] / ref.mean(axis=0), rtol=1e-14)
    assert isinstance(scaler_from_dict(pre.to_dict()), DivideByMean)
    with pytest.raises(ValueError, match="not fitted: call fit"):
        Standardize().transform(ref)
    with pytest.raises(ValueError, match="x has 3 features but the reference has 2"):
        pre.transform(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"feature\(s\) \[1\].*constant"):
        Standardize().fit(np.column_stack([ref[:, 0], np.ones(1000)]))
    with pytest.raises(ValueError, match="zero reference mean"):
        DivideByMean().fit(np.column_stack([ref[:, 0], np.r_[np.ones(500), -np.ones(500)]]))
    with pytest.raises(ValueError, match="not 'standardize'"):
        Standardize.from_dict(pre.to_dict())
    with pytest.raises(ValueError, match="weights has 3 entries"):
        Standardize().fit(ref, weights=[1, 2, 3])
