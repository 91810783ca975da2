"""fastnplm.tune_clip: null toys per weight clip, their fitted chi2 dof and KS p against chi2(|w|)."""
import json

import numpy as np
import pytest
from scipy import stats

import fastnplm
from fastnplm.calibration.null import ToyNull
from fastnplm.ui.cli import main

N_EXP = 200
CLIPS = [0.5, 9.0]


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(11)
    return rng.exponential(size=(2000, 1)), rng.exponential(size=(20000, 1))


@pytest.fixture(scope="module")
def scan(samples):
    ref, pool = samples
    return fastnplm.tune_clip(ref, pool, [4], CLIPS, toys=16, n_expected=N_EXP, seed=3, progress=False, restarts=1)


def test_each_clip_reports_its_own_toys(scan):
    assert scan.n_params == 13  # 1-4-1: 4 + 4 weights and biases of the hidden layer, 4 + 1 of the output
    assert scan.clips.tolist() == CLIPS
    for j, cal in enumerate(scan.calibrations):
        t = cal.t[:, 0]
        assert t.shape == (16,) and cal.converged.all()
        assert scan.dof[j] == pytest.approx(ToyNull(t).chi2_fit()["dof"], rel=1e-12)
        assert scan.ks_pvalue[j] == pytest.approx(stats.kstest(t, stats.chi2(13).cdf).pvalue, rel=1e-12)
    assert scan.best_clip == CLIPS[int(np.argmax(scan.ks_pvalue))]
    # the same toy data at every clip: only the network's flexibility changes
    assert np.array_equal(scan.calibrations[0].n_events, scan.calibrations[1].n_events)


def test_a_larger_clip_gives_a_larger_null(scan):
    # the clip bounds how far f can follow the toys' fluctuations: mean t grows with it. Here the
    # means differ by several standard errors (std of t / sqrt(16) < 1 at either clip).
    low, high = (cal.t[:, 0] for cal in scan.calibrations)
    se = np.hypot(low.std(ddof=1), high.std(ddof=1)) / np.sqrt(low.size)
    assert high.mean() - low.mean() > 3 * se
    assert scan.dof[1] > scan.dof[0]


def test_store_resumes_to_the_uninterrupted_scan(samples, scan, tmp_path):
    ref, pool = samples
    fastnplm.tune_clip(ref, pool, [4], CLIPS, toys=6, n_expected=N_EXP, seed=3, store=tmp_path, progress=False,
                       restarts=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip_0.5.jsonl", "clip_9.jsonl"]
    resumed = fastnplm.tune_clip(ref, pool, [4], CLIPS, toys=16, n_expected=N_EXP, seed=3, store=tmp_path,
                                 progress=False, restarts=1)
    for a, b in zip(resumed.calibrations, scan.calibrations):
        np.testing.assert_array_equal(a.t, b.t)


def test_bad_input_is_named(samples):
    ref, pool = samples
    with pytest.raises(ValueError, match="clips is empty"):
        fastnplm.tune_clip(ref, pool, [4], [], toys=5, n_expected=N_EXP)
    with pytest.raises(ValueError, match="> 0"):
        fastnplm.tune_clip(ref, pool, [4], [1.0, -2.0], toys=5, n_expected=N_EXP)
    with pytest.raises(ValueError, match="repeated"):
        fastnplm.tune_clip(ref, pool, [4], [1.0, 1.0], toys=5, n_expected=N_EXP)
    with pytest.raises(TypeError, match="clips="):
        fastnplm.tune_clip(ref, pool, [4], [1.0], toys=5, n_expected=N_EXP, clip=2.0)


def test_cli_tune_clip(samples, tmp_path, capsys):
    ref, pool = samples
    np.save(tmp_path / "R.npy", ref)
    np.save(tmp_path / "P.npy", pool)
    png = tmp_path / "scan.png"
    rc = main(["tune-clip", "--reference", str(tmp_path / "R.npy"), "--pool", str(tmp_path / "P.npy"),
               "--n-expected", str(N_EXP), "--hidden", "4", "--clips", "0.5,9", "--toys", "3", "--seed", "3",
               "--plot", str(png), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_params"] == 13 and [r["clip"] for r in out["clips"]] == CLIPS
    assert out["best_clip"] in CLIPS
    assert png.stat().st_size > 1000
