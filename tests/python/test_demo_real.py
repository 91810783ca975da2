"""The real-data demo on the bundled CMS open data: provenance, the split, and its verdicts."""
import gzip
import json
import os

import numpy as np
import pytest

from fastnplm.io import datasets
from fastnplm.ui import demo
from fastnplm.ui.cli import main


def test_bundled_files_match_their_recorded_sha256():
    with open(os.path.join(datasets.DATA_DIR, "README.md")) as fh:
        readme = fh.read()
    assert "CC0" in readme
    for name, (fname, digest) in datasets.CMS_FILES.items():
        assert datasets.sha256_file(datasets.cms_dimuon_path(name, verify=True)) == digest
        assert fname in readme and digest in readme


def test_features_and_mass_recomputed_from_the_csv():
    x, mass = datasets.cms_dimuon("ymumu")
    with gzip.open(datasets.cms_dimuon_path("ymumu"), "rt") as fh:
        raw = np.genfromtxt(fh, delimiter=",", names=True, dtype=None, encoding="ascii")
    assert x.shape == (20000, 5) and raw.shape == (20000,)
    np.testing.assert_array_equal(x[:, 0], raw["pt1"])
    np.testing.assert_array_equal(x[:, 3], raw["eta2"])
    dphi = np.abs(raw["phi1"] - raw["phi2"])
    np.testing.assert_allclose(x[:, 4], np.where(dphi > np.pi, 2 * np.pi - dphi, dphi), atol=1e-12)
    # the mass from the four-vectors (E, p), independent of the massless pt-eta-phi formula;
    # they differ by the muon mass terms (~1e-4 relative typically, more for a few
    # soft, collinear muons) and by the rounding in the file
    e = raw["E1"] + raw["E2"]
    p2 = sum((raw[f"p{c}1"] + raw[f"p{c}2"]) ** 2 for c in "xyz")
    rel = np.abs(mass / np.sqrt(np.maximum(e**2 - p2, 0)) - 1)
    assert np.median(rel) < 1e-3 and np.quantile(rel, 0.9) < 5e-3
    assert np.mean((mass > 8) & (mass < 12)) > 0.95


def test_split_is_disjoint_and_the_signal_is_in_the_window():
    parts = demo.split(seed=3)
    x, _ = datasets.cms_dimuon("ymumu")
    rows = {k: {tuple(r) for r in parts[k]} for k in ("reference", "pool", "data", "signal")}
    sizes = {k: len(v) for k, v in rows.items()}
    assert sizes == {"reference": 8000, "pool": 10000, "data": 1000, "signal": 400}
    union = set().union(*rows.values())
    assert len(union) == sum(sizes.values())                       # no event in two parts
    assert union <= {tuple(r) for r in x}
    lo, hi = demo.WINDOW
    assert ((parts["mass_signal"] > lo) & (parts["mass_signal"] < hi)).all()


def test_demo_real_reduced(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    html = tmp_path / "demo.html"
    assert main(["demo", "--real", "--toys", "30", "--report", str(html), "--json", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    null, inj = out["null"], out["injected"]
    # null: a random split of one real sample sits inside its toys
    assert all(row["exceeded"] > 0 for row in null["per_width"])
    assert null["min-p"]["p"] > 0.05 and null["prod-p"]["p"] > 0.05
    # injected resonance: above every toy at every width, and far in the chi2 tail
    assert all(row["exceeded"] == 0 for row in inj["per_width"])
    assert max(row["chi2_extrapolation_z"] for row in inj["per_width"]) > 3
    assert all(i["t"] > n["t"] for i, n in zip(inj["per_width"], null["per_width"]))
    assert inj["min-p"]["p"] == pytest.approx(1 / 31)
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 6 and "http" not in page.split("<pre>")[0]
    assert json.loads((tmp_path / "demo.json").read_text())["settings"]["file_sha256"] == datasets.CMS_FILES["ymumu"][1]
