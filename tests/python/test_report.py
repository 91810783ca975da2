"""fastnplm.report: one offline HTML page and a JSON record whose numbers are recomputed here."""
import hashlib
import json
import re

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("matplotlib")

import fastnplm  # noqa: E402


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(5)
    ref, pool = rng.normal(size=(3000, 2)), rng.normal(size=(6000, 2))
    data = np.vstack([rng.normal(size=(290, 2)), rng.normal([1.8, 0], 0.2, size=(10, 2))])
    np.save(tmp / "D.npy", data)
    model = fastnplm.KernelNPLM(M=50, lam=1e-5, center_pool="reference", seed=1, threads=1)
    rec = fastnplm.report(ref, tmp / "D.npy", model, pool=pool, toys=30, n_expected=300, sigmas=[0.6, 1.2], seed=4,
                          names=["x", "y"], path=tmp / "r.html", extra={"note": "test"})
    return tmp, ref, pool, data, model, rec


def test_html_is_self_contained(written):
    tmp, *_ , rec = written
    page = (tmp / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    # no external resource of any kind: every src is an inline image, no href, no URL at all in attributes
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert "href=" not in page and "<script" not in page and "<link" not in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    import base64
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for s in srcs)
    assert rec["html"] == str(tmp / "r.html") and rec["json"] == str(tmp / "r.json")


def test_json_record_numbers_are_the_librarys(written):
    tmp, ref, pool, data, model, _ = written
    rec = json.loads((tmp / "r.json").read_text())
    for key, arr in (("reference", ref), ("pool", pool), ("data", data)):
        assert rec["inputs"][key]["shape"] == list(arr.shape)
        assert rec["inputs"][key]["sha256"] == hashlib.sha256(np.ascontiguousarray(arr, np.float64).tobytes()).hexdigest()
    assert rec["inputs"]["data"]["file"]["sha256"] == hashlib.sha256((tmp / "D.npy").read_bytes()).hexdigest()
    cal = fastnplm.calibrate(model, ref, pool, toys=30, n_expected=300, sigmas=[0.6, 1.2], seed=4, progress=False)
    t_obs = [cal.model(j).fit(ref, data, n_expected=300).t for j in range(2)]
    for j, row in enumerate(rec["per_width"]):
        assert row["t"] == pytest.approx(t_obs[j], rel=1e-12)
        p = (1 + np.count_nonzero(cal.t[:, j] >= t_obs[j])) / 31
        assert row["p"] == pytest.approx(p) and row["z"] == pytest.approx(stats.norm.isf(p))
    agg = fastnplm.aggregate(cal, t_obs)
    for m in ("min-p", "prod-p", "avg-p", "softmax-t"):
        assert rec["aggregated"][m]["p"] == pytest.approx(agg[m]["p"])
    assert rec["settings"]["sigmas"] == [0.6, 1.2] and rec["settings"]["toys"] == 30
    assert rec["versions"]["numpy"] == np.__version__ and rec["versions"]["build_info"] == fastnplm.build_info()
    assert rec["versions"]["fastnplm"] == fastnplm.__version__
    assert {"calibration_seconds", "data_fit_seconds", "plots_seconds", "total_seconds"} <= set(rec["timings"])
    assert rec["note"] == "test" and rec["feature_names"] == ["x", "y"]


def test_report_needs_toys_or_a_calibration():
    x = np.random.default_rng(0).normal(size=(100, 1))
    with pytest.raises(ValueError, match="pass pool="):
        fastnplm.report(x, x[:20])


def test_report_of_a_neural_model(tmp_path):
    # a neural calibration has no kernel width: the record says so (sigma null) and its numbers are
    # the library's (t of the data fitted by the toys' model, p from the toys)
    rng = np.random.default_rng(5)
    ref, pool = rng.exponential(size=(4000, 1)), rng.exponential(size=(8000, 1))
    data = np.vstack([rng.exponential(size=(190, 1)), rng.normal(1.5, 0.1, size=(10, 1))])
    model = fastnplm.NeuralNPLM(hidden=(3,), clip=9.0, epochs=300, lr=1e-2, threads=1, history_every=0)
    rec = fastnplm.report(ref, data, model, pool=pool, toys=10, n_expected=200, seed=4, path=tmp_path / "n.html")
    page = (tmp_path / "n.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2  # null distribution, reconstruction
    js = json.loads((tmp_path / "n.json").read_text())
    assert js["settings"]["sigmas"] == [None] and js["settings"]["model"]["kind"] == "neural"
    cal = fastnplm.calibrate(model, ref, pool, toys=10, n_expected=200, seed=4, progress=False)
    t_obs = cal.model(0).fit(ref, data, n_expected=200).t
    row = js["per_width"][0]
    assert row["sigma"] is None and row["t"] == pytest.approx(t_obs, rel=1e-12)
    assert row["p"] == pytest.approx(cal.p_value(t_obs)["p"]) and rec["json"] == str(tmp_path / "n.json")


def test_verdict_reads_the_headline_p_and_z():
    from fastnplm.calibration import verdict

    def one_width(k, toys=300):
        p = (1 + k) / (toys + 1)
        return {"settings": {"toys": toys}, "per_width": [{"sigma": 0.3, "p": p, "z": float(stats.norm.isf(p)),
                                                          "toys_exceeding": k}]}
    v = verdict(one_width(60))  # p = 0.2: Z = 0.84
    assert v["text"].startswith("The data are compatible with the reference: p = 0.203, Z = 0.83")
    assert v["exceeded"] == 60 and v["interval"][0] < 60 / 300 < v["interval"][1] and not v["bound"]
    assert verdict(one_width(5))["text"].startswith("A mild tension")  # p = 0.02: Z = 2.05
    v = verdict(one_width(0))  # beyond every toy: limits
    assert v["bound"] and v["text"].startswith("A mild tension with the reference, not significant: p < 0.00332, Z > 2.71")
    assert "none of the toys reached the data" in v["text"]
    v = verdict(one_width(0, toys=1000))  # p < 1/1001: Z > 3.09
    assert v["text"].startswith("The data depart from the reference: p < 0.000999, Z > 3.09")
    # several widths: the min-p test heads
    several = {"settings": {"toys": 100}, "per_width": [{}, {}],
               "aggregated": {"min-p": {"p": 3 / 101, "z": float(stats.norm.isf(3 / 101)), "exceeded": 2}}}
    v = verdict(several)
    assert v["test"] == "min-p over 2 widths" and v["p"] == pytest.approx(3 / 101) and v["exceeded"] == 2
