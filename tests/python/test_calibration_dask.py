"""calibrate(executor=dask Client): the same toys as the local path, and a killed worker's toys
recomputed, not lost. A LocalCluster of 2 single-threaded worker processes on loopback."""
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from distributed import Client, LocalCluster

import fastnplm

N_EXP = 100.0


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=40)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(0)
    return rng.exponential(size=(2000, 1)), rng.exponential(size=(20000, 1))


@pytest.mark.parametrize("center_pool", ["pooled", "reference"])  # plain and shared-reference paths
def test_cluster_gives_the_local_toys(client, samples, tmp_path, center_pool):
    ref, pool = samples
    model = fastnplm.KernelNPLM(M=20, sigma=0.4, lam=1e-5, center_pool=center_pool)
    local = fastnplm.calibrate(model, ref, pool, toys=10, n_expected=N_EXP, sigmas=[0.3, 0.6], seed=3)
    store = tmp_path / "toys.fnplm"
    remote = fastnplm.calibrate(model, ref, pool, toys=10, n_expected=N_EXP, sigmas=[0.3, 0.6], seed=3,
                                executor=client, batch=3, store=store)
    assert remote.settings["path"] == local.settings["path"]
    assert np.array_equal(remote.t, local.t) and np.array_equal(remote.n_events, local.n_events)
    assert np.array_equal(fastnplm.load_calibration(store).t, local.t)


def test_killed_worker_toys_are_recomputed(client, samples, tmp_path):
    ref, pool = samples
    model = fastnplm.KernelNPLM(M=60, sigma=0.4, lam=1e-6, hessian="stream", cg_tol=1e-12, max_iter=5000)
    store = tmp_path / "toys.fnplm"
    kw = dict(toys=24, n_expected=N_EXP, seed=8)
    out = {}

    def run():
        out["cal"] = fastnplm.calibrate(model, ref, pool, executor=client, batch=2, store=store, **kw)

    th = threading.Thread(target=run)
    th.start()
    deadline = time.time() + 120
    while time.time() < deadline and (not store.exists() or store.read_text().count("\n") < 2):
        time.sleep(0.01)  # the header and a first finished block
    finished_at_kill = store.read_text().count("\n") - 1
    pid = next(iter(client.run(os.getpid).values()))
    os.kill(pid, signal.SIGKILL)
    th.join(timeout=300)
    assert not th.is_alive(), "calibration did not finish after a worker was killed"
    assert finished_at_kill < kw["toys"], "the worker should have been killed midway"
    local = fastnplm.calibrate(model, ref, pool, **kw)
    assert np.array_equal(out["cal"].t, local.t)
    ks = [json.loads(line)["k"] for line in store.read_text().splitlines()[1:] if line.strip()]
    assert sorted(ks) == list(range(kw["toys"]))  # every toy recorded once
