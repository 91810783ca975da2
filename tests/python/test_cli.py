"""The console entry point: fit on .npy files, the demo, and errors as messages."""
import html
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import fastnplm
from fastnplm.ui.cli import main


def test_fit_json_matches_python_api(tmp_path, capsys):
    rng = np.random.default_rng(0)
    ref, dat = rng.normal(size=(3000, 2)), rng.normal(0.2, 1.0, size=(300, 2))
    np.save(tmp_path / "R.npy", ref)
    np.save(tmp_path / "D.npy", dat)
    rc = main(["fit", "--reference", str(tmp_path / "R.npy"), "--data", str(tmp_path / "D.npy"),
               "--M", "40", "--sigma", "1.2", "--lam", "1e-5", "--seed", "3", "--threads", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    expected = fastnplm.KernelNPLM(M=40, sigma=1.2, lam=1e-5, seed=3).fit(ref, dat)
    assert out["t"] == pytest.approx(expected.t, rel=1e-12)
    assert out["M"] == 40 and out["n_reference"] == 3000 and out["n_data"] == 300 and out["converged"]


def test_bad_input_is_a_message_not_a_traceback(tmp_path, capsys):
    np.save(tmp_path / "R.npy", np.ones((10, 2)))
    np.save(tmp_path / "D.npy", np.ones((5, 3)))
    rc = main(["fit", "--reference", str(tmp_path / "R.npy"), "--data", str(tmp_path / "D.npy"), "--M", "3"])
    assert rc == 2
    assert "data has 3 features but the reference has 2" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="cannot read data file"):
        main(["fit", "--reference", str(tmp_path / "R.npy"), "--data", str(tmp_path / "missing.npy")])


def test_demo_console_script_runs_the_whole_test(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastnplm.ui.cli", "demo", "--M", "100", "--toys", "40", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n_reference"] == 200000 and out["n_expected"] == pytest.approx(2000, rel=1e-12) and out["converged"]
    assert out["t"] > 0 and np.isfinite(out["t"])
    # p from the toys, Z from p, the verdict from Z; the toys took the shared-reference path
    k = out["toys_exceeding"]
    assert out["p"] == pytest.approx((1 + k) / 41) and out["z"] == pytest.approx(stats.norm.isf(out["p"]))
    assert out["settings"]["path"] == "spectral" and out["settings"]["center_pool"] == "uniform"
    assert out["verdict"].startswith("The data") and f"{k} of 40 toys" in out["verdict"]
    if "report" in out:  # with matplotlib: the page opens with the same verdict
        page = (tmp_path / "fastnplm-demo.html").read_text()
        assert page.index(html.escape(out["verdict"])) < page.index("<table>")


def _saved_problem(tmp_path, seed):
    """Reference, pool and data as .npy files; returns the arrays, the store path and --reference."""
    rng = np.random.default_rng(seed)
    ref, pool = rng.exponential(size=(2000, 1)), rng.exponential(size=(20000, 1))
    dat = rng.exponential(size=(100, 1))
    for name, arr in (("R", ref), ("P", pool), ("D", dat)):
        np.save(tmp_path / f"{name}.npy", arr)
    return ref, dat, str(tmp_path / "toys.fnplm"), ["--reference", str(tmp_path / "R.npy")]


def test_calibrate_then_test(tmp_path, capsys):
    ref, dat, store, common = _saved_problem(tmp_path, 1)
    assert main(["calibrate", *common, "--pool", str(tmp_path / "P.npy"), "--n-expected", "100", "--toys", "12",
                 "--sigmas", "0.3,0.8", "--M", "20", "--lam", "1e-5", "--store", store, "--json"]) == 0
    cal_out = json.loads(capsys.readouterr().out)
    assert cal_out["toys"] == 12 and cal_out["sigmas"] == [0.3, 0.8]
    assert cal_out["path"] == "spectral"  # the default centers come from the reference: shared toys
    assert main(["test", *common, "--data", str(tmp_path / "D.npy"), "--calibration", store, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # the CLI's numbers are the library's: refit at each width and aggregate on the stored toys
    cal = fastnplm.load_calibration(store)
    t_obs = [fastnplm.KernelNPLM(M=20, sigma=s, lam=1e-5, hessian="spectral").fit(ref, dat, n_expected=100).t
             for s in (0.3, 0.8)]
    expected = fastnplm.aggregate(cal, t_obs)
    assert [w["t"] for w in out["per_width"]] == pytest.approx(t_obs, rel=1e-12)
    for method in ("min-p", "prod-p", "avg-p", "softmax-t"):
        assert out[method]["p"] == pytest.approx(expected[method]["p"])
    assert out["verdict"]["test"] == "min-p over 2 widths" and out["verdict"]["p"] == expected["min-p"]["p"]
    # the text output opens with the same verdict
    assert main(["test", *common, "--data", str(tmp_path / "D.npy"), "--calibration", store]) == 0
    assert capsys.readouterr().out.splitlines()[0] == out["verdict"]["text"]


def test_test_command_fits_the_data_with_the_toys_solver(tmp_path, capsys):
    # --center-pool reference: the cost model takes a shared-reference path, and 'test' must fit
    # the observed data through it too (the store's model names the solver, hessian=path).
    ref, dat, store, common = _saved_problem(tmp_path, 2)
    assert main(["calibrate", *common, "--pool", str(tmp_path / "P.npy"), "--n-expected", "100", "--toys", "6",
                 "--sigma", "0.3", "--M", "150", "--lam", "1e-7", "--center-pool", "reference", "--store", store,
                 "--json"]) == 0
    path = json.loads(capsys.readouterr().out)["path"]
    assert path in ("spectral", "shared")
    assert main(["test", *common, "--data", str(tmp_path / "D.npy"), "--calibration", store, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    toys_model = fastnplm.KernelNPLM(M=150, sigma=0.3, lam=1e-7, center_pool="reference", hessian=path)
    assert out["per_width"][0]["t"] == toys_model.fit(ref, dat, n_expected=100).t
