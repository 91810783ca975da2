"""The command line as a tool: help, version, citation, global options, exit codes, JSON,
the report and bench commands."""
import json
import re
import time

import numpy as np
import pytest

import fastnplm
from fastnplm.ui.cli import main


def _problem(tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    ref, pool, dat = rng.normal(size=(2000, 2)), rng.normal(size=(6000, 2)), rng.normal(0.1, 1, size=(200, 2))
    for name, arr in (("R", ref), ("P", pool), ("D", dat)):
        np.save(tmp_path / f"{name}.npy", arr)
    return ref, pool, dat


def test_help_version_and_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ("fit", "demo", "calibrate", "test", "report", "bench", "examples:", "exit codes:", "--cite"):
        assert word in out
    for cmd in ("fit", "demo", "calibrate", "test", "report", "bench"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"fastnplm {cmd}" in text and "exit codes:" in text
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"fastnplm {fastnplm.__version__}"


def test_cite_is_bibtex_of_the_method_papers(capsys):
    assert main(["--cite"]) == 0
    bib = capsys.readouterr().out
    entries = re.findall(r"@(\w+)\{(\w+),(.*?)\n\}", bib, re.S)
    assert len(entries) == 8 and len({key for _, key, _ in entries}) == 8
    assert bib.count("{") == bib.count("}")
    for kind, key, body in entries:
        fields = dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?$", body, re.M))
        assert {"author", "title", "year"} <= set(fields), key
        assert re.fullmatch(r"\d{4}", fields["year"])
        if kind == "article":
            assert "journal" in fields
    for arxiv in ("1806.02350", "1912.12155", "2111.13633", "2204.02317", "2303.05413", "2408.12296"):
        assert f"eprint        = {{{arxiv}}}" in bib


def test_global_options_before_or_after_the_command(tmp_path, capsys):
    ref, _, dat = _problem(tmp_path)
    common = ["--reference", str(tmp_path / "R.npy"), "--data", str(tmp_path / "D.npy"), "--M", "30", "--sigma", "1"]
    assert main(["--threads", "1", "--seed", "4", "--json", "fit", *common]) == 0
    before = json.loads(capsys.readouterr().out)
    assert main(["fit", *common, "--threads", "1", "--seed", "4", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert before["threads"] == after["threads"] == 1 and before["seed"] == 4
    assert before["t"] == after["t"] == pytest.approx(
        fastnplm.KernelNPLM(M=30, sigma=1.0, seed=4).fit(ref, dat).t, rel=1e-12)
    assert main(["--quiet", "fit", *common]) == 0                   # quiet: no text result
    assert capsys.readouterr().out == ""
    assert main(["fit", *common, "--standardize", "--json", "-q"]) == 0   # JSON stays under --quiet
    out = json.loads(capsys.readouterr().out)
    pre = fastnplm.preprocessing.Standardize().fit(ref)
    assert out["preprocessing"]["kind"] == "standardize"
    assert out["t"] == pytest.approx(fastnplm.KernelNPLM(M=30, sigma=1.0).fit(pre.transform(ref), pre.transform(dat)).t,
                                     rel=1e-12)


def test_exit_codes(tmp_path, capsys, monkeypatch):
    _problem(tmp_path)
    assert main([]) == 2                                            # no command
    assert main(["demo", "--signal", "-1", "--no-report"]) == 2
    assert "n_signal must be >= 0, got -1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["fit", "--no-such-option"])
    assert e.value.code == 2
    np.save(tmp_path / "D3.npy", np.ones((5, 3)))
    common = ["--reference", str(tmp_path / "R.npy"), "--M", "3"]
    assert main(["fit", *common, "--data", str(tmp_path / "D3.npy")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["fit", *common, "--data", str(tmp_path / "nothing.npy")])
    assert e.value.code == 2
    (tmp_path / "a.csv").write_text("x,y\n1,2\n3,4\n")
    with pytest.raises(SystemExit) as e:
        main(["fit", "--reference", str(tmp_path / "a.csv"), "--data", str(tmp_path / "a.csv"), "--columns", "x,z"])
    assert e.value.code == 2 and "column 'z' not found; available: x, y" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:                            # no CUDA backend in this build
        main(["bench", "--device", "cuda"])
    assert e.value.code == 2 and "--device cuda" in capsys.readouterr().err and not fastnplm.cuda_available()

    def broken(*a, **k):
        raise RuntimeError("the solver broke")
    monkeypatch.setattr(fastnplm.ui.cli.KernelNPLM, "fit", broken)
    assert main(["fit", *common, "--data", str(tmp_path / "D.npy")]) == 1
    assert "RuntimeError: the solver broke" in capsys.readouterr().err


def test_report_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    ref, pool, dat = _problem(tmp_path, 1)
    out_html = tmp_path / "rep.html"
    assert main(["report", "--reference", str(tmp_path / "R.npy"), "--data", str(tmp_path / "D.npy"), "--pool",
                 str(tmp_path / "P.npy"), "--toys", "20", "--sigmas", "0.8,1.6", "--M", "40", "--seed", "2",
                 "--out", str(out_html), "--json", "--threads", "1"]) == 0
    rec = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "rep.json").read_text())
    assert saved["per_width"] == rec["per_width"] and out_html.exists()
    model = fastnplm.KernelNPLM(M=40, lam=1e-6, seed=2)  # the command's defaults
    cal = fastnplm.calibrate(model, ref, pool, toys=20, n_expected=200, sigmas=[0.8, 1.6], seed=2, progress=False)
    assert [r["t"] for r in rec["per_width"]] == pytest.approx([cal.model(j).fit(ref, dat).t for j in range(2)],
                                                               rel=1e-12)
    assert rec["inputs"]["pool"]["file"]["path"] == str(tmp_path / "P.npy")
    # from a calibration store instead of toys run on the spot: the same numbers
    store = str(tmp_path / "toys.fnplm")
    assert main(["calibrate", "--reference", str(tmp_path / "R.npy"), "--pool", str(tmp_path / "P.npy"),
                 "--n-expected", "200", "--toys", "20", "--sigmas", "0.8,1.6", "--M", "40", "--seed", "2",
                 "--store", store, "--quiet"]) == 0
    assert main(["report", "--reference", str(tmp_path / "R.npy"), "--data", str(tmp_path / "D.npy"),
                 "--calibration", store, "--out", str(tmp_path / "rep2.html"), "--json", "-q"]) == 0
    rec2 = json.loads(capsys.readouterr().out)
    assert [r["t"] for r in rec2["per_width"]] == pytest.approx([r["t"] for r in rec["per_width"]], rel=1e-12)
    assert [r["p"] for r in rec2["per_width"]] == [r["p"] for r in rec["per_width"]]
    with pytest.raises(SystemExit) as e:
        main(["report", "--reference", str(tmp_path / "R.npy"), "--data", str(tmp_path / "D.npy")])
    assert e.value.code == 2 and "exactly one of --pool" in capsys.readouterr().err


def test_bench_quick(capsys):
    start = time.perf_counter()
    assert main(["bench", "--quick", "--json", "--threads", "1"]) == 0
    seconds = time.perf_counter() - start
    doc = json.loads(capsys.readouterr().out)
    assert seconds < 60 and doc["mode"] == "quick" and doc["device"] == "cpu"
    assert set(doc["scenarios"]) == {"kernel_fit", "toys", "neural_epochs", "evaluation"}
    assert doc["machine"]["threads_used"] == 1 and doc["machine"]["fastnplm_build_info"] == fastnplm.build_info()
    s = doc["scenarios"]
    assert s["kernel_fit"]["converged"] and s["toys"]["calibrate"]["all_converged"]
    ev = s["evaluation"]
    assert ev["kernel"]["events_per_second"] == pytest.approx(ev["n_events"] / ev["kernel"]["seconds_median"])
    assert main(["bench", "--quick", "--threads", "1"]) == 0        # the table, then the JSON
    text = capsys.readouterr().out
    assert text.splitlines()[1].startswith("kernel fit") and "events/s" in text


def test_fit_with_nuisances_is_the_librarys(tmp_path, capsys):
    # --nuisance / --auxiliary give fastnplm's nuisance fit (t = tau - Delta and the pulls)
    rng = np.random.default_rng(4)
    ref, dat = rng.exponential(size=(8000, 1)), 1.05 * rng.exponential(size=(500, 1))
    np.save(tmp_path / "R.npy", ref)
    np.save(tmp_path / "D.npy", dat)
    samples = {nu: np.random.default_rng(k).exponential(size=(6000, 1)) * np.exp(nu)
               for k, nu in enumerate((0.0, -0.2, 0.2))}
    coef = fastnplm.models.learn_coefficients(samples, order=1, M=30, threads=1)
    coef.save(tmp_path / "scale.npz")
    args = ["fit", "--reference", str(tmp_path / "R.npy"), "--data", str(tmp_path / "D.npy"), "--M", "40",
            "--sigma", "0.5", "--lam", "1e-5", "--n-expected", "500", "--threads", "1", "--json",
            "--nuisance", "norm:0.1", "--nuisance", f"scale:0.15:{tmp_path / 'scale.npz'}", "--auxiliary", "scale=0.02"]
    assert main(args) == 0
    rec = json.loads(capsys.readouterr().out)
    nus = [fastnplm.Nuisance("norm", 0.1), fastnplm.Nuisance("scale", 0.15, "shape", coef)]
    want = fastnplm.KernelNPLM(M=40, sigma=0.5, lam=1e-5, threads=1).fit(ref, dat, n_expected=500, nuisances=nus,
                                                                          auxiliary={"scale": 0.02})
    assert rec["t"] == pytest.approx(want.t, rel=1e-12) and rec["tau"] == pytest.approx(want.tau, rel=1e-12)
    assert rec["delta"] == pytest.approx(want.delta, rel=1e-12) and rec["nu_tau"] == pytest.approx(want.nu_tau)
    assert rec["auxiliary"] == {"norm": 0.0, "scale": 0.02} and rec["converged"] is True
    bad = [["--nuisance", "norm"], ["--nuisance", "norm:wide"], ["--nuisance", "s:0.1:missing.npz"],
           ["--nuisance", "norm:0.1", "--auxiliary", "other=1"], ["--nuisance", "norm:0.1", "--auxiliary", "norm"]]
    for extra in bad:  # bad input: exit status 2 (returned, or raised as SystemExit by InputError)
        with pytest.raises(SystemExit) as e:
            main(args[:args.index("--nuisance")] + extra)
        assert e.value.code == 2 and "error: --" in capsys.readouterr().err


def test_calibrate_and_test_with_nuisances(tmp_path, capsys):
    # toys fitted with the nuisances, the data fitted with the store's nuisances and its own
    # auxiliary measurement: the library's numbers; a mismatch with the store is refused
    rng = np.random.default_rng(6)
    ref, pool, dat = (rng.exponential(size=(n, 1)) for n in (3000, 6000, 200))
    for name, arr in (("R", ref), ("P", pool), ("D", dat)):
        np.save(tmp_path / f"{name}.npy", arr)
    io = ["--reference", str(tmp_path / "R.npy"), "--M", "20", "--sigma", "0.5", "--lam", "1e-5", "--threads", "1"]
    store = str(tmp_path / "toys.fnplm")
    assert main(["calibrate", *io, "--pool", str(tmp_path / "P.npy"), "--n-expected", "200", "--toys", "3",
                 "--seed", "2", "--nuisance", "norm:0.1", "--store", store, "--quiet"]) == 0
    capsys.readouterr()
    test = ["test", "--reference", str(tmp_path / "R.npy"), "--threads", "1", "--data", str(tmp_path / "D.npy"),
            "--calibration", store, "--json"]  # the model is the store's
    assert main(test + ["--nuisance", "norm:0.1", "--auxiliary", "norm=0.03"]) == 0
    rec = json.loads(capsys.readouterr().out)
    nus = [fastnplm.Nuisance("norm", 0.1)]
    model = fastnplm.KernelNPLM(M=20, sigma=0.5, lam=1e-5, seed=2, threads=1)
    cal = fastnplm.calibrate(model, ref, pool, toys=3, n_expected=200, seed=2, nuisances=nus, progress=False)
    t_obs = cal.model(0).fit(ref, dat, n_expected=200, nuisances=nus, auxiliary={"norm": 0.03}).t
    assert rec["per_width"][0]["t"] == pytest.approx(t_obs, rel=1e-12)
    assert rec["per_width"][0]["p"] == pytest.approx(fastnplm.aggregate(cal, [t_obs])["per_width"][0]["p"])
    for extra in ([], ["--nuisance", "norm:0.2"], ["--nuisance", "other:0.1"]):
        with pytest.raises(SystemExit) as e:
            main(test + extra)
        assert e.value.code == 2 and "the calibration's nuisances" in capsys.readouterr().err
