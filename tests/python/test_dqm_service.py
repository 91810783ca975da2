"""The monitoring service (fastnplm.MonitorService, ``fastnplm monitor``): its configuration, its
SQLite history against independent computations, failures that stay local, the dashboard's data,
the read-only server, a kill-and-restart run, and the page in a real headless Chromium."""
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import fastnplm
from fastnplm.ui.cli import main
from fastnplm.ui.dqm import ConfigError, History, MonitorService, Selection, load_config, serve

from browser import Browser, find_chromium


def columns(rng, n, gain=1.0):
    """A toy detector: channel "tube" (time, charge) and channel "pad" (x, y, q). From ``gain``
    != 1 the tube's time resolution degrades."""
    return {"time": gain * rng.normal(size=n), "charge": rng.exponential(size=n),
            "x": rng.normal(size=n), "y": rng.normal(size=n), "q": rng.uniform(-1, 3, size=n)}


def write_detector(folder, n_batches=6, degrade_at=3, seed=0, size=400):
    rng = np.random.default_rng(seed)
    np.savez(folder / "reference.npz", **columns(rng, 4000))
    np.savez(folder / "pool.npz", **columns(rng, 12000))
    (folder / "incoming").mkdir(exist_ok=True)
    for k in range(n_batches):
        np.savez(folder / "incoming" / f"batch{k:04d}.npz",
                 **columns(rng, rng.poisson(size), gain=1.6 if k >= degrade_at else 1.0))


def config(**dashboard):
    """Two channels: "tube" at two widths; "pad" with a selection and standardised features."""
    return {"service": {"database": "dqm.sqlite", "threads": 1},
            "source": {"directory": "incoming"},
            "alarm": {"p": 0.05, "run_p": 0.2, "run_length": 2},
            "dashboard": {"folder": "dashboard", "refresh_seconds": 0.5, **dashboard},
            "defaults": {"reference": "reference.npz", "pool": "pool.npz", "toys": 40, "model": {"M": 25, "seed": 1}},
            "channel": [{"name": "tube", "columns": ["time", "charge"], "n_expected": 400,
                         "model": {"sigmas": [1.0, 2.5]}},
                        {"name": "pad", "columns": ["x", "y"], "selection": "q > 0 and abs(x) < 4",
                         "preprocessing": "standardize", "n_expected": 300}]}


def test_config_errors_name_what_is_wrong(tmp_path):
    def bad(change, match):
        cfg = config()
        change(cfg)
        with pytest.raises(ConfigError, match=match):
            load_config(cfg, base=str(tmp_path))

    bad(lambda c: c.update(extra={}), "unknown section extra")
    bad(lambda c: c["channel"][0].update(colums=["a"]), r"channel 'tube': unknown key 'colums'")
    bad(lambda c: c["channel"][1].pop("columns"), r"channel 'pad': 'columns' is required")
    bad(lambda c: c["channel"][1].update(name="tube"), "used by another channel")
    bad(lambda c: c["channel"][1].update(name="a b"), "name must be")
    bad(lambda c: c["channel"][1].update(selection="__import__('os').system('x')"), "only the functions")
    bad(lambda c: c["channel"][1].update(selection="x.real > 0"), "is not allowed")
    bad(lambda c: c["channel"][1].update(selection="x >"), "is not an expression")
    bad(lambda c: c["channel"][1].update(preprocessing="log"), "preprocessing must be one of")
    bad(lambda c: c["alarm"].update(p=1.5), r"\[alarm\] p must be a probability")
    bad(lambda c: c["service"].update(threads=0), r"\[service\] threads must be an integer >= 1")
    bad(lambda c: c["defaults"]["model"].update(MM=3), r"model: unknown key 'MM'")
    bad(lambda c: c["channel"][0]["model"].update(sigma=1.0), "both sigma and sigmas")
    bad(lambda c: c.update(channel=[]), "no channels")
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.toml")
    (tmp_path / "broken.toml").write_text("[service\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "broken.toml")
    # defaults and relative paths: from the file's folder
    (tmp_path / "ok.toml").write_text('[defaults]\nreference = "r.npz"\nn_expected = 10\nmodel = {M = 7}\n'
                                      '[[channel]]\nname = "a"\ncolumns = ["u"]\nmodel = {lam = 1e-5}\n')
    cfg = load_config(tmp_path / "ok.toml")
    ch = cfg["channels"][0]
    assert ch["reference"] == str(tmp_path / "r.npz") and ch["model"]["M"] == 7 and ch["model"]["lam"] == 1e-5
    assert ch["calibration"] == str(tmp_path / "calibrations" / "a.fnplm")
    assert cfg["service"]["database"] == str(tmp_path / "dqm.sqlite")


def test_selection_evaluates_like_numpy():
    rng = np.random.default_rng(0)
    cols = {"a": rng.normal(size=1000), "b": rng.normal(size=1000)}
    sel = Selection("-1 < a <= 0.5 and not (abs(b) > 2 or sqrt(a * a + b ** 2) > 1.8)")
    a, b = cols["a"], cols["b"]
    truth = (-1 < a) & (a <= 0.5) & ~((np.abs(b) > 2) | (np.sqrt(a * a + b ** 2) > 1.8))
    np.testing.assert_array_equal(sel.mask(cols), truth)
    assert sel.columns == ["a", "b"]
    with pytest.raises(ValueError, match="not a condition"):
        Selection("a + b").mask(cols)


def truth_monitors(tmp_path, name, pre):
    """Monitors built here from the stored calibration, independently of the service."""
    cal = fastnplm.load_calibration(tmp_path / "calibrations" / f"{name}.fnplm")
    return cal, [fastnplm.Monitor(cal, pre, sigma_index=j, threads=1) for j in range(len(cal.sigmas))]


def test_history_holds_what_the_monitors_compute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_detector(tmp_path)
    batches = [(f"b{k}", dict(np.load(f))) for k, f in enumerate(sorted((tmp_path / "incoming").iterdir()))]
    with MonitorService(config(), progress=False) as svc:
        assert sorted(svc.channels) == ["pad", "tube"] and svc.failed == {}
        assert svc.run(iter(batches), max_batches=2) == 2
        assert svc.run(iter(batches)) == len(batches) - 2
        assert svc.process(batches[0][1], batch_id="b0") is None  # recorded once only
    ref = np.load(tmp_path / "reference.npz")
    db = History(tmp_path / "dqm.sqlite", readonly=True)
    # tube: two widths, aggregated by min-p; the truth: Monitor and the calibration's own fit
    cal, mons = truth_monitors(tmp_path, "tube", np.column_stack([ref["time"], ref["charge"]]))
    rows = db.results("tube")
    assert [r["batch"] for r in rows] == [b for b, _ in batches]
    for (bid, data), row in zip(batches, rows):
        x = np.column_stack([data["time"], data["charge"]])
        widths = [w for w in db.widths("tube") if w["batch"] == bid]
        ts = []
        for j, (w, mon) in enumerate(zip(widths, mons)):
            truth = mon.test(x)
            assert w["t"] == pytest.approx(truth["t"], rel=1e-12) and w["sigma"] == cal.sigmas[j]
            assert w["p"] == pytest.approx((1 + np.count_nonzero(cal.t[:, j] >= w["t"])) / (cal.toys + 1))
            assert w["z"] == pytest.approx(truth["z"]) and w["p_lo"] <= w["p"] * (cal.toys + 1) / cal.toys <= 1
            ts.append(w["t"])
        fit_t = cal.model(0).fit(np.column_stack([ref["time"], ref["charge"]]), x, n_expected=400).t
        assert widths[0]["t"] == pytest.approx(fit_t, rel=1e-9)
        agg = fastnplm.aggregate(cal, ts)["min-p"]
        assert row["test"] == "min-p over 2 widths" and row["p"] == pytest.approx(agg["p"])
        assert (row["p_lo"], row["p_hi"]) == pytest.approx(agg["interval"]) and row["z"] == pytest.approx(agg["z"])
        assert row["n_events"] == len(x) and row["converged"] == 1
    # pad: the selection and the preprocessing applied as configured, one width
    keep = lambda d: (d["q"] > 0) & (np.abs(d["x"]) < 4)  # noqa: E731
    raw = np.column_stack([ref["x"], ref["y"]])[keep(ref)]
    pre = fastnplm.preprocessing.Standardize().fit(raw)
    cal, (mon,) = truth_monitors(tmp_path, "pad", pre.transform(raw))
    for (bid, data), row in zip(batches, db.results("pad")):
        x = pre.transform(np.column_stack([data["x"], data["y"]])[keep(data)])
        truth = mon.test(x)
        (w,) = [w for w in db.widths("pad") if w["batch"] == bid]
        assert w["t"] == pytest.approx(truth["t"], rel=1e-12) and row["p"] == pytest.approx(truth["p"])
        assert row["n_events"] == len(x) and row["test"].startswith("sigma = ")
    # alarms: p < 0.05, or 2 consecutive batches with p < 0.2, recomputed from the stored p
    for name in ("tube", "pad"):
        run = 0
        for row in db.results(name):
            run = run + 1 if row["p"] < 0.2 else 0
            want = "+".join(k for k, on in (("p", row["p"] < 0.05), ("run", run >= 2)) if on)
            assert (row["alarm"], row["low_run"]) == (want, run)
    assert any(r["alarm"] for r in db.results("tube")[3:])  # the degraded tube is seen
    fps = {(r["model_fingerprint"], r["calibration_fingerprint"]) for r in db.results("tube")}
    assert len(fps) == 1 and all(len(f) == 64 for f in fps.pop())
    chans = {c["name"]: c for c in db.channels()}
    assert chans["tube"]["status"] == "ok" and chans["tube"]["settings"]["sigmas"] == [1.0, 2.5]
    db.close()

    # a restart resumes: nothing is recorded twice, the run alarm continues from the history
    with MonitorService(config(), progress=False) as svc:
        assert svc.run(iter(batches)) == 0
        last = svc.low_run["tube"]
        out = svc.process(batches[-1][1], batch_id="again")
        assert out["results"]["tube"]["low_run"] in (0, last + 1)
        assert svc.history.count() == len(batches) + 1


def test_bad_channel_and_bad_files_do_not_stop_the_others(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_detector(tmp_path, n_batches=2)
    cfg = config(reconstruction=False)
    cfg["channel"].append({"name": "ghost", "reference": "missing.npz", "columns": ["u"], "n_expected": 10})
    cfg["channel"].append({"name": "nostore", "columns": ["x"], "pool": None, "n_expected": 10})
    incoming = tmp_path / "incoming"
    (incoming / "batch0002.npz").write_bytes(b"not a zip file")
    rng = np.random.default_rng(5)
    good = columns(rng, 300)
    np.savez(incoming / "batch0003.npz", time=good["time"], charge=good["charge"])  # tube only
    np.savez(incoming / "batch0004.npz", **{**good, "y": good["y"][:10]})            # pad: ragged columns
    np.savez(incoming / "batch0005.npz", **{k: v for k, v in good.items() if k != "q"})  # pad: no "q"
    np.savez(incoming / "batch0006.npz", **{**good, "time": np.full(300, np.nan)})    # tube: NaN
    with MonitorService(cfg, progress=False) as svc:
        assert sorted(svc.failed) == ["ghost", "nostore"] and "missing.npz" in svc.failed["ghost"]
        assert "does not exist, and no pool" in svc.failed["nostore"]
        assert svc.run(once=True) == 7
        h = svc.history
        errors = {(e["batch"], e["channel"]): e["message"] for e in h.errors()}
        assert "cannot read the batch" in errors[("batch0002.npz", "")]
        assert "lacks column 'q'" in errors[("batch0005.npz", "pad")]
        assert "NaN" in errors[("batch0006.npz", "tube")]
        assert ("batch0004.npz", "pad") in errors and ("", "ghost") in errors
        tube = [r["batch"] for r in h.results("tube")]
        pad = [r["batch"] for r in h.results("pad")]
        assert tube == ["batch0000.npz", "batch0001.npz", "batch0003.npz", "batch0004.npz", "batch0005.npz"]
        assert pad == ["batch0000.npz", "batch0001.npz", "batch0006.npz"]  # batch0003 does not carry pad
        assert {c["name"]: c["status"] for c in h.channels()} == {"ghost": "error", "nostore": "error",
                                                                   "pad": "ok", "tube": "ok"}
        data = json.loads((tmp_path / "dashboard" / "data.js").read_text()[len("window.DQM_DATA = "):-2])
    # a CSV batch with a header: tested on the channels whose columns it holds
    with MonitorService(cfg, progress=False) as svc:
        csv = tmp_path / "extra.csv"
        np.savetxt(csv, np.column_stack([good["time"], good["charge"], good["x"]]), delimiter=",",
                   header="time,charge,x", comments="")
        out = svc.process(csv)
        assert sorted(out["results"]) == ["tube"]  # pad: only "x" is there, which is an error of pad
        assert out["errors"] == {"pad": "ValueError: the batch lacks columns 'y', 'q'"}
        assert out["results"]["tube"]["n_events"] == 300
    assert [c["name"] for c in data["channels"]] == ["tube", "pad", "ghost", "nostore"]
    assert data["channels"][2]["status"] == "error" and data["channels"][0]["reconstruction"] is None
    assert len(data["channels"][0]["history"]["z"]) == 5 and data["batches"]["count"] == 7
    assert {(e["batch"], e["channel"]) for e in data["errors"]} == set(errors)


def test_cli_monitor(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_detector(tmp_path, n_batches=3)
    cfg = config()
    (tmp_path / "dqm.toml").write_text(
        '[service]\ndatabase = "dqm.sqlite"\n[source]\ndirectory = "incoming"\n[dashboard]\nfolder = "dash"\n'
        '[defaults]\nreference = "reference.npz"\npool = "pool.npz"\ntoys = 30\nmodel = {M = 20}\n'
        '[[channel]]\nname = "pad"\ncolumns = ["x", "y"]\nn_expected = 400\n')
    assert main(["monitor", "dqm.toml", "--once", "--json", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batches_recorded"] == 3 and out["channels"] == ["pad"] and out["failed_channels"] == {}
    assert (tmp_path / "dash" / "index.html").exists()
    assert main(["monitor", "dqm.toml", "--once", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["batches_recorded"] == 0
    np.savez(tmp_path / "incoming" / "batch0100.npz", **columns(np.random.default_rng(9), 400))
    np.savez(tmp_path / "incoming" / "batch0101.npz", **columns(np.random.default_rng(10), 400))
    assert main(["monitor", "dqm.toml", "--once", "--max-batches", "1", "--serve", "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert "dashboard: http://127.0.0.1:" in out and "batches_recorded    1" in out
    (tmp_path / "nodash.toml").write_text((tmp_path / "dqm.toml").read_text().replace('folder = "dash"', 'folder = ""'))
    with pytest.raises(SystemExit) as e:
        main(["monitor", "nodash.toml", "--serve-only"])
    assert e.value.code == 2 and "no dashboard to serve" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text('[[channel]]\nname = "pad"\ncolumns = ["x"]\n')
    with pytest.raises(SystemExit) as e:
        main(["monitor", "bad.toml"])
    assert e.value.code == 2 and "'reference' is required" in capsys.readouterr().err
    del cfg


def request(server, method, target):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", "127.0.0.1")
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, resp


def test_server_serves_its_folder_read_only(tmp_path):
    folder = tmp_path / "site" / "dashboard"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<html>dashboard</html>")
    (folder / "data.js").write_text("window.DQM_DATA = {};")
    (folder / ".hidden").write_text("hidden")
    (folder / "sub").mkdir()
    (folder / "sub" / "x.js").write_text("nested")
    (tmp_path / "site" / "secret.txt").write_text("SECRET")
    (folder / "link.txt").symlink_to(tmp_path / "site" / "secret.txt")
    server = serve(folder, port=0, background=True)
    try:
        assert server.server_address[0] == "127.0.0.1"  # this machine only, unless told otherwise
        status, body, resp = request(server, "GET", "/")
        assert status == 200 and body == b"<html>dashboard</html>"
        assert resp.getheader("Content-Type").startswith("text/html") and resp.getheader("X-Content-Type-Options")
        status, body, _ = request(server, "GET", "/data.js?t=12345")
        assert status == 200 and body.startswith(b"window.DQM_DATA")
        status, body, _ = request(server, "HEAD", "/index.html")
        assert status == 200 and body == b""
        for target in ["/../secret.txt", "/..%2fsecret.txt", "/%2e%2e/secret.txt", "/%2e%2e%2fsecret.txt",
                       "/%252e%252e%252fsecret.txt", "/..\\secret.txt", "/..%5csecret.txt", "//secret.txt",
                       str(tmp_path / "site" / "secret.txt"), "/%2F" + str(tmp_path / "site" / "secret.txt")[1:],
                       "/etc/passwd", "/link.txt", "/.hidden", "/sub/x.js", "/sub", "/sub/", "/%00", "/index.html%00",
                       "/%ff%fe", "http://127.0.0.1/../secret.txt", "*", "/" + "a" * 300]:
            status, body, _ = request(server, "GET", target)
            assert status in (400, 404), (target, status)
            assert b"SECRET" not in body and b"nested" not in body and b"hidden" not in body, target
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"):
            status, _, resp = request(server, method, "/index.html")
            assert status == 405 and resp.getheader("Allow") == "GET, HEAD", method
        assert request(server, "BREW", "/index.html")[0] == 501
        assert (folder / "index.html").read_text() == "<html>dashboard</html>"  # nothing was written
    finally:
        server.shutdown()
        server.server_close()


def test_kill_and_restart_record_every_batch_exactly_once(tmp_path):
    """SIGKILL the service at moments of its run, start it again: at the end every batch file is in
    the history once per channel, with the t that the channel's Monitor computes."""
    n = 40
    write_detector(tmp_path, n_batches=n, degrade_at=30, size=1500)
    (tmp_path / "dqm.toml").write_text(
        '[service]\ndatabase = "dqm.sqlite"\n[source]\ndirectory = "incoming"\n[dashboard]\nfolder = "dash"\n'
        '[defaults]\nreference = "reference.npz"\npool = "pool.npz"\ntoys = 60\nn_expected = 1500\n'
        'model = {M = 40, sigmas = [0.8, 2.0]}\n'
        '[[channel]]\nname = "tube"\ncolumns = ["time", "charge"]\n'
        '[[channel]]\nname = "pad"\ncolumns = ["x", "y", "q"]\n')
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "fastnplm.ui.cli", "monitor", "dqm.toml", "--once", "--quiet", "--threads", "1"]
    db_path = tmp_path / "dqm.sqlite"

    def recorded():
        if not db_path.exists():
            return 0
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as db:
            try:
                return db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
            except sqlite3.OperationalError:  # the tables are being created
                return 0

    killed_running = 0
    for target in (1, 8, 16, 24):
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while proc.poll() is None and recorded() < target and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_running += 1
        proc.wait(30)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()
        proc.stderr.close()
    assert killed_running >= 3  # the kills landed while it was testing batches
    # the last run polls the directory until SIGTERM, which lets it finish the batch in progress
    proc = subprocess.Popen(cmd[:-4] + ["--json", "--threads", "1"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while recorded() < n and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["batches_in_history"] == n
    assert not [f for f in os.listdir(tmp_path / "dash") if f.endswith(".tmp")]
    db = sqlite3.connect(db_path)
    names = sorted(f.name for f in (tmp_path / "incoming").iterdir())
    assert [r[0] for r in db.execute("SELECT batch FROM batches ORDER BY seq")] == names
    assert [r[0] for r in db.execute("SELECT seq FROM batches ORDER BY seq")] == list(range(1, n + 1))
    rows = db.execute("SELECT batch, channel, COUNT(*) FROM results GROUP BY batch, channel").fetchall()
    assert sorted((b, c) for b, c, _ in rows) == sorted((b, c) for b in names for c in ("pad", "tube"))
    assert all(k == 1 for _, _, k in rows)
    assert db.execute("SELECT COUNT(*) FROM widths").fetchone()[0] == 2 * 2 * n
    assert db.execute("SELECT COUNT(*) FROM errors").fetchone()[0] == 0
    # the stored t: what a Monitor of the stored calibration gives for the same batch
    ref = np.load(tmp_path / "reference.npz")
    for name, cols in (("tube", ["time", "charge"]), ("pad", ["x", "y", "q"])):
        cal, mons = truth_monitors(tmp_path, name, np.column_stack([ref[c] for c in cols]))
        assert cal.toys == 60
        stored = {(b, w): t for b, w, t in db.execute("SELECT batch, width, t FROM widths WHERE channel = ?", (name,))}
        for b in names[::7]:
            x = np.column_stack([np.load(tmp_path / "incoming" / b)[c] for c in cols])
            for j, mon in enumerate(mons):
                assert stored[(b, j)] == pytest.approx(mon.test(x)["t"], rel=1e-12)
    db.close()


def test_dashboard_in_a_headless_browser(tmp_path, monkeypatch):
    """The served page loads without console errors, shows every channel with its Z history and
    reconstruction, redraws when a batch arrives, and its screenshot is not blank; from file:// too."""
    exe = find_chromium()
    if exe is None:
        pytest.skip("no chromium: .ci/run installs Debian's chromium (apt-get install chromium)")
    monkeypatch.chdir(tmp_path)
    write_detector(tmp_path, n_batches=5)
    cfg = config()
    cfg["channel"].append({"name": "broken", "reference": "missing.npz", "columns": ["u"], "n_expected": 10})
    files = sorted((tmp_path / "incoming").iterdir())
    with MonitorService(cfg, progress=False) as svc:
        for f in files[:4]:
            svc.process(f)
        server = serve(tmp_path / "dashboard", port=0, background=True)
        try:
            with Browser(exe) as browser:
                browser.open(server.url)
                browser.pump(1.0)
                assert browser.problems() == []
                names = browser.evaluate("[...document.querySelectorAll('.channel h2')].map(h => h.textContent)")
                assert [s.split()[0] for s in names] == ["tube", "pad", "broken"]
                overview = browser.evaluate("document.getElementById('overview').textContent")
                assert all(n in overview for n in ("tube", "pad", "broken"))
                assert browser.evaluate("document.querySelectorAll('svg[aria-label^=\"Z history\"]').length") == 2
                assert browser.evaluate("document.querySelectorAll('svg[aria-label^=\"reconstruction\"]').length") == 4
                assert browser.evaluate("document.querySelectorAll('#ch-tube circle').length") > 4
                assert "4 batches recorded" in browser.evaluate("document.getElementById('status').textContent")
                assert "missing.npz" in browser.evaluate("document.getElementById('errors').textContent")
                svc.process(files[4])  # the open page redraws with the new batch
                deadline = time.monotonic() + 10
                while "5 batches" not in browser.evaluate("document.getElementById('status').textContent"):
                    assert time.monotonic() < deadline, "the page did not update"
                    browser.pump(0.2)
                browser.pump(0.5)
                assert browser.problems() == []
                shot = browser.screenshot(str(tmp_path / "dashboard.png"))
                browser.open((tmp_path / "dashboard" / "index.html").as_uri())  # offline, from the folder
                browser.pump(0.5)
                assert browser.problems() == []
                assert browser.evaluate("document.querySelectorAll('.channel').length") == 3
        finally:
            server.shutdown()
            server.server_close()
    from matplotlib.image import imread
    img = imread(shot)[..., :3]
    assert img.shape[0] > 800 and img.shape[1] >= 1000
    assert img.std() > 0.05 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # not blank: text, lines, colours
