"""Toy calibration (plain path): seeds, resumable store, p-values and their statistics."""
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import fastnplm
from fastnplm.calibration import toy_rng

N_EXP = 100.0


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(0)
    return rng.exponential(size=(2000, 1)), rng.exponential(size=(20000, 1))  # reference, disjoint pool


def _model():  # centers from the pooled sample: one plain fit per toy
    return fastnplm.KernelNPLM(M=20, sigma=0.5, lam=1e-5, center_pool="pooled")


def test_toys_depend_on_seed_and_index_only(samples):
    ref, pool = samples
    a = fastnplm.calibrate(_model(), ref, pool, toys=6, n_expected=N_EXP, seed=4)
    b = fastnplm.calibrate(_model(), ref, pool, toys=12, n_expected=N_EXP, seed=4)
    c = fastnplm.calibrate(_model(), ref, pool, toys=6, n_expected=N_EXP, seed=5)
    assert np.array_equal(a.t, b.t[:6]) and np.array_equal(a.n_events, b.n_events[:6])
    assert not np.array_equal(a.t, c.t)
    # toy 3 is exactly a plain fit of the events toy_rng(4, 3) draws
    rng = toy_rng(4, 3)
    n = rng.poisson(N_EXP)
    data = pool[rng.choice(len(pool), n, replace=False)]
    assert a.t[3, 0] == _model().fit(ref, data, n_expected=N_EXP).t


def test_several_widths_use_the_same_toy_data(samples):
    ref, pool = samples
    cal = fastnplm.calibrate(_model(), ref, pool, toys=4, n_expected=N_EXP, sigmas=[0.3, 1.0], seed=1)
    one = fastnplm.calibrate(fastnplm.KernelNPLM(M=20, sigma=1.0, lam=1e-5, center_pool="pooled"), ref, pool, toys=4,
                             n_expected=N_EXP, seed=1)
    assert cal.t.shape == (4, 2) and np.array_equal(cal.t[:, 1], one.t[:, 0])


def test_store_resumes_to_the_uninterrupted_result(samples, tmp_path):
    ref, pool = samples
    full = fastnplm.calibrate(_model(), ref, pool, toys=8, n_expected=N_EXP, seed=2)
    store = tmp_path / "toys.fnplm"
    fastnplm.calibrate(_model(), ref, pool, toys=3, n_expected=N_EXP, seed=2, store=store)
    with open(store, "ab") as fh:  # a record torn by a kill in mid-write
        fh.write(b'{"k": 3, "seed": 2, "n": 9')
    resumed = fastnplm.calibrate(_model(), ref, pool, toys=8, n_expected=N_EXP, seed=2, store=store)
    assert np.array_equal(resumed.t, full.t) and np.array_equal(resumed.n_events, full.n_events)
    ks = [json.loads(line)["k"] for line in store.read_text().splitlines()[1:] if line.strip().endswith("}")]
    assert sorted(ks) == list(range(8))  # each toy once, the torn record dropped
    with pytest.raises(ValueError, match="other settings"):
        fastnplm.calibrate(_model(), ref, pool, toys=8, n_expected=N_EXP, seed=3, store=store)


def test_killed_calibration_resumes_identically(samples, tmp_path):
    ref, pool = samples
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "pool.npy", pool)
    store = tmp_path / "toys.fnplm"
    script = (f"import numpy as np, fastnplm\n"
              "fastnplm.calibrate(fastnplm.KernelNPLM(M=20, sigma=0.5, lam=1e-5, center_pool='pooled'), "
              f"np.load(r'{tmp_path / 'ref.npy'}'),"
              f" np.load(r'{tmp_path / 'pool.npy'}'), toys=400, n_expected={N_EXP}, seed=7, store=r'{store}')\n")
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:  # kill it once some toys are on disk
        import time
        deadline = time.time() + 60
        while time.time() < deadline and (not store.exists() or store.read_text().count("\n") < 6):
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    n_before = store.read_text().count("\n")
    assert 6 <= n_before < 401, "the subprocess should have been killed midway"
    resumed = fastnplm.calibrate(_model(), ref, pool, toys=30, n_expected=N_EXP, seed=7, store=store)
    fresh = fastnplm.calibrate(_model(), ref, pool, toys=30, n_expected=N_EXP, seed=7)
    assert np.array_equal(resumed.t, fresh.t)


def test_p_value_statistics_on_a_hand_made_table():
    t = np.arange(1.0, 100.0)  # 99 toys: 1..99
    cal = fastnplm.Calibration(t=t[:, None], sigmas=(1.0,), n_events=np.ones(99), converged=np.ones((99, 1), bool),
                               seed=0)
    r = cal.p_value(90.0)
    assert r["exceeded"] == 10 and r["p"] == pytest.approx(11 / 100)
    lo, hi = r["interval"]  # Clopper-Pearson, 68.27 %
    assert lo == pytest.approx(stats.beta.ppf(0.15865, 10, 90), rel=1e-6)
    assert hi == pytest.approx(stats.beta.ppf(1 - 0.15865, 11, 89), rel=1e-6)
    assert cal.z(90.0) == pytest.approx(stats.norm.isf(0.11))
    far = cal.p_value(1000.0)
    assert far["exceeded"] == 0 and far["bound"] == pytest.approx(0.01) and "extrapolation" in far["chi2_extrapolation"]["note"]
    pw = fastnplm.power([95.0, 99.5, 10.0, 200.0], cal, z=2.0)  # Z >= 2 needs p <= 0.0228: only t above every toy
    assert pw["power"] == 0.5 and pw["error"] == pytest.approx(0.25)


def test_chi2_fit_recovers_the_degrees_of_freedom():
    rng = np.random.default_rng(3)
    t = rng.chisquare(7.0, size=4000)
    cal = fastnplm.Calibration(t=t[:, None], sigmas=(1.0,), n_events=np.ones(4000), converged=np.ones((4000, 1), bool),
                               seed=0)
    fit = cal.chi2_fit()
    # ML dof of 4000 chi2_7 draws: standard error ~ 0.1; 5 sigma tolerance
    assert fit["dof"] == pytest.approx(7.0, abs=0.5) and fit["ks_pvalue"] > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("center_pool", ["pooled", "uniform", "coverage"])  # plain fits; the spectral path
def test_null_p_values_are_uniform(samples, center_pool):
    # 200 reference-distributed datasets against 300 toys, each fitted with the calibration's
    # model: their p-values must be uniform. KS at the 1e-3 level (fixed seeds): a false
    # failure has probability 1e-3.
    ref, pool = samples
    model = fastnplm.KernelNPLM(M=20, sigma=0.5, lam=1e-5, center_pool=center_pool)
    cal = fastnplm.calibrate(model, ref, pool[:10000], toys=300, n_expected=N_EXP, seed=11)
    assert cal.settings["path"] == ("plain" if center_pool == "pooled" else "spectral")
    other = pool[10000:]  # disjoint from the toys' part of the pool
    rng = np.random.default_rng(12)
    ps = []
    for _ in range(200):
        data = other[rng.choice(len(other), rng.poisson(N_EXP), replace=False)]
        ps.append(cal.p_value(cal.model().fit(ref, data, n_expected=N_EXP).t)["p"])
    assert stats.kstest(ps, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"n_expected": None}, ValueError, "n_expected"),
    ({"toys": 0}, ValueError, "toys must be >= 1"),
    ({"executor": object()}, TypeError, "executor must be a dask"),
    ({"progress": "yes"}, TypeError, "progress must be"),
    ({"fast": 1}, TypeError, "fast must be"),
    ({"sigmas": [0.5, -1]}, ValueError, "sigmas entry"),
    ({"n_reference": 100}, ValueError, "only for a reference generator"),
    ({"reference": lambda rng, n: rng.exponential(size=(n, 1))}, ValueError, "needs n_reference"),
])
def test_bad_calibration_settings(samples, kwargs, exc, match):
    ref, pool = samples
    with pytest.raises(exc, match=match):
        args = {"reference": ref, "pool": pool, "toys": 2, "n_expected": N_EXP, **kwargs}
        fastnplm.calibrate(_model(), **args)


def _cal(t):
    t = np.asarray(t, float)
    return fastnplm.Calibration(t=t, sigmas=tuple(range(t.shape[1])), n_events=np.ones(len(t)),
                                converged=np.ones(t.shape, bool), seed=0)


def test_aggregation_on_a_hand_made_table():
    # 4 toys, 2 widths. Leave-one-out toy p-values: column 0 (1,2,3,4) -> (1, .75, .5, .25);
    # column 1 (4,3,2,1) -> (.25, .5, .75, 1). Observation t = (3.5, 0.5): p = (2/5, 5/5).
    cal = _cal([[1, 4], [2, 3], [3, 2], [4, 1]])
    out = fastnplm.aggregate(cal, [3.5, 0.5])
    assert [w["p"] for w in out["per_width"]] == [pytest.approx(0.4), pytest.approx(1.0)]
    # min-p: toys' min p = .25, .5, .5, .25 -> statistics -.25, -.5, -.5, -.25; observed -0.4:
    # two toys reach it -> p = (1 + 2) / 5
    assert out["min-p"]["statistic"] == pytest.approx(-0.4) and out["min-p"]["p"] == pytest.approx(3 / 5)
    # Fisher: toys -log(p0 p1) = -log(.25), -log(.375), -log(.375), -log(.25); observed -log(.4)
    assert out["prod-p"]["statistic"] == pytest.approx(-np.log(0.4))
    assert out["prod-p"]["p"] == pytest.approx((1 + 4) / 5)
    # avg-p: toys all 0.625 -> -0.625; observed -0.7 -> p = 5/5
    assert out["avg-p"]["p"] == pytest.approx(1.0)
    # soft-max at a tiny temperature is the max of the standardised t
    z0 = (3.5 - 2.5) / np.std([1, 2, 3, 4], ddof=1)
    cold = fastnplm.aggregate(cal, [3.5, 0.5], temperature=1e-3)
    assert cold["softmax-t"]["statistic"] == pytest.approx(z0, rel=1e-6)


def test_aggregation_of_identical_widths_reduces_to_one_width():
    rng = np.random.default_rng(4)
    t = rng.chisquare(5, size=200)
    cal2, cal1 = _cal(np.c_[t, t]), _cal(t[:, None])
    for t_obs in (3.0, 9.0, 15.0):
        out = fastnplm.aggregate(cal2, [t_obs, t_obs])
        p1 = cal1.p_value(t_obs)["p"]
        for method in ("min-p", "prod-p", "avg-p", "softmax-t"):
            assert out[method]["p"] == pytest.approx(p1), method


def test_aggregated_p_values_are_uniform_under_the_null():
    # toys and 'observations' from the same 3-width distribution (correlated columns):
    # each aggregated p must be uniform; KS at the 1e-3 level, fixed seed.
    rng = np.random.default_rng(5)

    def draw(n):
        base = rng.chisquare(4, size=(n, 1))
        return base + rng.chisquare(2, size=(n, 3))

    cal = _cal(draw(400))
    obs = draw(300)
    for method in ("min-p", "prod-p", "avg-p", "softmax-t"):
        ps = [fastnplm.aggregate(cal, o)[method]["p"] for o in obs]
        assert stats.kstest(ps, "uniform").pvalue > 1e-3, method


def test_store_loads_as_a_calibration(samples, tmp_path):
    ref, pool = samples
    store = tmp_path / "c.fnplm"
    cal = fastnplm.calibrate(_model(), ref, pool, toys=5, n_expected=N_EXP, sigmas=[0.4, 0.8], seed=6, store=store)
    back = fastnplm.load_calibration(store)
    assert np.array_equal(back.t, cal.t) and back.sigmas == (0.4, 0.8) and back.settings["model"]["M"] == 20
    (tmp_path / "junk").write_text("hello\n")
    with pytest.raises(ValueError, match="not a fastnplm calibration store"):
        fastnplm.load_calibration(tmp_path / "junk")
    with pytest.raises(ValueError, match="not a fastnplm calibration store"):
        fastnplm.calibrate(_model(), ref, pool, toys=2, n_expected=N_EXP, store=tmp_path / "junk")


def _fast_model(**kw):
    return fastnplm.KernelNPLM(**{"M": 10, "sigma": 0.1, "lam": 1e-4, "center_pool": "reference", **kw})


def test_fast_path_is_a_spectral_fit_toy_by_toy(samples):
    # The shared-reference path and a plain hessian="spectral" fit of each toy are the same
    # computation: identical t. The calibration hands out that model for the observed data.
    ref, pool = samples
    m = _fast_model(M=30, sigma=0.3, lam=1e-6)
    fast = fastnplm.calibrate(m, ref, pool, toys=6, n_expected=N_EXP, seed=1, fast=True)
    assert fast.settings["path"] == "spectral" and fast.model().hessian == "spectral"
    for k in range(6):
        rng = toy_rng(1, k)
        data = pool[rng.choice(len(pool), rng.poisson(N_EXP), replace=False)]
        assert fast.t[k, 0] == fast.model().fit(ref, data, n_expected=N_EXP).t


@pytest.mark.parametrize("kw, rtol", [
    (dict(M=10, sigma=0.1, lam=1e-4), 1e-10),   # cond(K_MM) 4e3: measured 2e-13
    (dict(M=20, sigma=0.2, lam=1e-6), 1e-8),    # cond(K_MM) 1e9: measured 2e-9
    (dict(M=150, sigma=0.3, lam=1e-7), 1e-6),   # cond(K_MM) 3e18: measured 2e-7 (see below)
])
def test_fast_path_is_the_exact_newton_step_of_plain_fits(samples, kw, rtol):
    # Solved exactly (tight cg_tol), the shared spectral path and the core's dense-mode fits
    # compute the same estimator toy by toy. Where K_MM is singular to working precision the
    # exact step itself is only defined to roundoff x cond: an 80-bit solve of such a problem
    # put the core and this path each ~5e-7 from it (fastnplm/_spectral.py).
    ref, pool = samples
    m = _fast_model(cg_tol=1e-12, max_iter=20000, hessian="dense", **kw)
    fast = fastnplm.calibrate(m, ref, pool, toys=6, n_expected=N_EXP, seed=2, fast=True)
    plain = fastnplm.calibrate(m, ref, pool, toys=6, n_expected=N_EXP, seed=2, fast=False)
    assert plain.settings["path"] == "plain" and plain.model().hessian == "dense"
    np.testing.assert_allclose(fast.t, plain.t, rtol=rtol)
    assert fast.converged.all() and np.array_equal(fast.n_events, plain.n_events)


def test_fast_path_at_the_published_tolerance_follows_the_same_cg(samples):
    # Early-stopped CG (cg_tol = sqrt(1e-7)): same iterates in exact arithmetic; on this
    # well-conditioned problem the two agree to roundoff.
    ref, pool = samples
    m = _fast_model(hessian="dense")
    fast = fastnplm.calibrate(m, ref, pool, toys=8, n_expected=N_EXP, seed=5, fast=True)
    plain = fastnplm.calibrate(m, ref, pool, toys=8, n_expected=N_EXP, seed=5, fast=False)
    np.testing.assert_allclose(fast.t, plain.t, rtol=1e-9)


def test_fast_path_with_given_centers_and_several_widths(samples):
    ref, pool = samples
    centers = np.linspace(0.05, 3.0, 8)[:, None]
    m = fastnplm.KernelNPLM(centers=centers, sigma=0.1, lam=1e-4, cg_tol=1e-13, max_iter=10000)
    fast = fastnplm.calibrate(m, ref, pool, toys=6, n_expected=N_EXP, sigmas=[0.1, 0.15], seed=3, fast=True)
    plain = fastnplm.calibrate(m, ref, pool, toys=6, n_expected=N_EXP, sigmas=[0.1, 0.15], seed=3, fast=False)
    np.testing.assert_allclose(fast.t, plain.t, rtol=1e-9)
    assert fast.model(1).sigma == 0.15 and np.array_equal(fast.model(1).centers, centers)


def test_fast_path_does_not_depend_on_batching_or_threads(samples):
    ref, pool = samples
    a = fastnplm.calibrate(_fast_model(threads=1), ref, pool, toys=10, n_expected=N_EXP, seed=4, batch=3, fast=True)
    b = fastnplm.calibrate(_fast_model(threads=2), ref, pool, toys=10, n_expected=N_EXP, seed=4, batch=32, fast=True)
    c = fastnplm.calibrate(_fast_model(threads=2), ref, pool, toys=10, n_expected=N_EXP, seed=4, batch=1, fast=True)
    assert np.array_equal(a.t, b.t) and np.array_equal(a.t, c.t)


def test_fast_path_refuses_models_it_does_not_compute(samples):
    ref, pool = samples
    with pytest.raises(ValueError, match="fast=True needs"):
        fastnplm.calibrate(fastnplm.KernelNPLM(M=10, sigma=0.1, center_pool="pooled"), ref, pool, toys=2,
                           n_expected=N_EXP, fast=True)
    with pytest.raises(ValueError, match="fast=True needs"):
        fastnplm.calibrate(_fast_model(solver="newton"), ref, pool, toys=2, n_expected=N_EXP, fast=True)
    with pytest.raises(ValueError, match="spectral"):
        fastnplm.KernelNPLM(M=10, solver="newton", hessian="spectral")


def test_cost_model_choices():
    from fastnplm.calibration._toys import choose_path as _choose_path
    big = fastnplm.KernelNPLM(M=1000, sigma=0.3, lam=1e-6, center_pool="reference")
    pooled = fastnplm.KernelNPLM(M=1000, sigma=0.3, lam=1e-6, center_pool="pooled")
    default = fastnplm.KernelNPLM(M=1000, sigma=0.3, lam=1e-6)
    # the 1D bench problem: the shared path wins by far, and the default model takes it
    assert _choose_path([big], 200_000, 2000.0, 1, 300, None, False) == "spectral"
    assert _choose_path([default], 200_000, 2000.0, 1, 300, None, False) == "spectral"
    # data-dependent centers, a reference generator or fast=False: one fit per toy
    assert _choose_path([pooled], 200_000, 2000.0, 1, 300, None, False) == "plain"
    assert _choose_path([big], 200_000, 2000.0, 1, 300, None, True) == "plain"
    assert _choose_path([big], 200_000, 2000.0, 1, 300, False, False) == "plain"
    # very many centers in many dimensions: the eigendecomposition (10 M^3) and the projection
    # N_D M r lose; the shared path factorises once and reads the reference once per CG
    # iteration for a block of toys, so it wins even for two toys (a plain fit per toy repeats
    # the factorisations), but it runs on the CPU only
    huge = fastnplm.KernelNPLM(M=20000, sigma=1.0, lam=1e-6, center_pool="reference", hessian="stream")
    assert _choose_path([huge], 100_000, 20000.0, 5, 2, None, False) == "shared"
    assert _choose_path([huge], 100_000, 20000.0, 5, 300, None, False) == "shared"
    mid = fastnplm.KernelNPLM(M=5000, sigma=1.0, lam=1e-6)
    assert _choose_path([mid], 100_000, 20000.0, 5, 300, None, False) == "shared"
    assert _choose_path([mid], 100_000, 20000.0, 5, 300, True, False) == "shared"  # fast: the cheaper shared path
    small = fastnplm.KernelNPLM(M=50, sigma=1.0, lam=1e-6)
    assert _choose_path([small], 200_000, 5000.0, 5, 300, None, False) == "spectral"


def test_store_resumes_on_the_path_it_was_started_with(samples, tmp_path):
    ref, pool = samples
    store = tmp_path / "s.fnplm"
    a = fastnplm.calibrate(_fast_model(), ref, pool, toys=4, n_expected=N_EXP, seed=9, store=store, fast=False)
    b = fastnplm.calibrate(_fast_model(), ref, pool, toys=7, n_expected=N_EXP, seed=9, store=store)  # fast=None
    assert b.settings["path"] == "plain" and np.array_equal(a.t, b.t[:4])
    assert np.array_equal(b.t, fastnplm.calibrate(_fast_model(), ref, pool, toys=7, n_expected=N_EXP, seed=9,
                                                  fast=False).t)
    with pytest.raises(ValueError, match="other settings"):
        fastnplm.calibrate(_fast_model(), ref, pool, toys=7, n_expected=N_EXP, seed=9, store=store, fast=True)
    with pytest.raises(ValueError, match="other settings"):  # a model change is never adopted
        fastnplm.calibrate(_fast_model(M=12), ref, pool, toys=7, n_expected=N_EXP, seed=9, store=store)


def test_reference_generator_draws_a_fresh_reference_per_toy(samples):
    ref, pool = samples

    def gen(rng, n):
        return rng.exponential(size=(n, 1))

    cal = fastnplm.calibrate(_model(), gen, pool, toys=3, n_expected=N_EXP, seed=6, n_reference=1500)
    assert cal.settings["path"] == "plain" and cal.settings["n_reference"] == 1500
    rng = toy_rng(6, 2)  # toy 2: its data, then its reference, from the same stream
    data = pool[rng.choice(len(pool), rng.poisson(N_EXP), replace=False)]
    fresh = rng.exponential(size=(1500, 1))
    assert cal.t[2, 0] == _model().fit(fresh, data, n_expected=N_EXP).t
    with pytest.raises(ValueError, match="fast=True needs"):
        fastnplm.calibrate(_fast_model(), gen, pool, toys=2, n_expected=N_EXP, n_reference=1500, fast=True)


def test_progress_bar(samples, capsys):
    ref, pool = samples
    fastnplm.calibrate(_model(), ref, pool, toys=3, n_expected=N_EXP, seed=1, progress=True, batch=1)
    assert "3/3" in capsys.readouterr().err
    fastnplm.calibrate(_model(), ref, pool, toys=3, n_expected=N_EXP, seed=1, progress=False)
    fastnplm.calibrate(_model(), ref, pool, toys=3, n_expected=N_EXP, seed=1)  # not a terminal: no bar
    assert capsys.readouterr().err == ""


def test_neural_toys_are_trained_together_and_reproducible(samples, tmp_path):
    # A block of toys goes through one many-networks call (the reference read once per epoch);
    # toy k's data and initialisation seed come from toy_rng(seed, k) only.
    ref, pool = samples
    model = fastnplm.NeuralNPLM(hidden=(3,), clip=5.0, epochs=40, lr=0.02, history_every=0)
    a = fastnplm.calibrate(model, ref, pool, toys=5, n_expected=N_EXP, seed=3, batch=5, store=tmp_path / "n.fnplm")
    b = fastnplm.calibrate(model, ref, pool, toys=5, n_expected=N_EXP, seed=3, batch=2)
    assert np.array_equal(a.t, b.t) and a.t.shape == (5, 1) and a.settings["path"] == "plain"
    rng = toy_rng(3, 4)
    data = pool[rng.choice(len(pool), rng.poisson(N_EXP), replace=False)]
    alone = model.fit_batch(ref, [data], n_expected=N_EXP, seeds=[int(rng.integers(2**63))])[0]
    assert a.t[4, 0] == alone.t
    back = fastnplm.load_calibration(tmp_path / "n.fnplm")
    assert np.array_equal(back.t, a.t) and back.model().hidden == (3,) and back.model().epochs == 40
    assert back.model().dtype == "float64" and back.settings["model"]["dtype"] == "float64"
    with pytest.raises(ValueError, match="no width"):
        fastnplm.calibrate(model, ref, pool, toys=2, n_expected=N_EXP, sigmas=[0.3])


def test_calibration_test_fits_the_data_with_the_toys_model(samples):
    ref, pool = samples
    model = fastnplm.KernelNPLM(M=20, lam=1e-5, seed=1)  # default centers: the shared path
    cal = fastnplm.calibrate(model, ref, pool, toys=25, n_expected=N_EXP, sigmas=[0.3, 0.8], seed=3)
    data = np.random.default_rng(9).exponential(size=(120, 1)) * 1.3
    out = cal.test(ref, data)
    t_obs = [fastnplm.KernelNPLM(M=20, sigma=s, lam=1e-5, seed=1, hessian="spectral").fit(ref, data,
                                                                                        n_expected=N_EXP).t
             for s in (0.3, 0.8)]
    assert [r["t"] for r in out["per_width"]] == t_obs
    for j, row in enumerate(out["per_width"]):
        assert row["p"] == cal.p_value(t_obs[j], j)["p"] and row["z"] == cal.z(t_obs[j], j)
    agg = fastnplm.aggregate(cal, t_obs)
    assert out["aggregated"]["min-p"] == agg["min-p"] and out["verdict"]["test"] == "min-p over 2 widths"
    assert out["verdict"]["p"] == agg["min-p"]["p"] and len(out["fits"]) == 2
