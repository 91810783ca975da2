"""Reference weights of either sign (NLO generators' negative weights), against independent truth:
the dense oracle (tests/python/oracle.py) for the kernel fits on every Hessian path, a numpy
evaluation of the neural loss and gradient, the permutation test's refit for its fast path, and
brute-force statistics for the baselines. The weights here are 15% negative (-1 against +1),
their total N_D: the reference still describes its distribution, with fewer effective events."""
import numpy as np
import pytest

import fastnplm
from fastnplm import _checks, _core
from fastnplm import baselines as bl
from fastnplm.calibration.permutation import _a_scale, permutation_test
from fastnplm.models import NotPositiveDefiniteError
from fastnplm.models._shared import SharedSolver
from fastnplm.models._spectral import SpectralReference

import oracle as O

RTOL = 1e-6  # alpha and t against the exact step, as in test_kernel_oracle.py
TIGHT = dict(cg_tol=1e-13, max_iter=10000)
NOT_PD = "weighted Hessian of the Newton step is not positive definite"


def signed(n, n_data, frac, rng):
    """n weights, a fraction ``frac`` of them -1 and the rest +1 (at random), scaled to total n_data."""
    w = np.where(rng.random(n) < frac, -1.0, 1.0)
    return w * (n_data / w.sum())


def spread(x, m, min_dist, rng):
    """Indices of m events of x at least min_dist apart (well conditioned K_MM: the oracle's exact
    step is then defined far below the tolerances here)."""
    chosen: list = []
    for i in rng.permutation(x.shape[0]):
        if all(np.linalg.norm(x[i] - x[j]) >= min_dist for j in chosen):
            chosen.append(i)
            if len(chosen) == m:
                return np.sort(np.array(chosen))
    raise AssertionError("not enough spread events")


def problem(ref, dat, frac, m, min_dist, sigma, lam, rng):
    w = signed(ref.shape[0], dat.shape[0], frac, rng)
    idx = spread(ref, m, min_dist, rng)
    w[idx[:2]] = -abs(w[idx[:2]])  # two centers carry negative class weights
    w *= dat.shape[0] / w.sum()
    return dict(ref=ref, dat=dat, w=w, centers=ref[idx], center_w=w[idx], sigma=sigma, lam=lam)


@pytest.fixture(scope="module")
def p1():
    """1-D: reference Exp(1), data Exp(1) with a bump at 1.6, 15% negative weights."""
    rng = np.random.default_rng(3)
    ref = rng.exponential(size=(2000, 1))
    dat = np.vstack([rng.exponential(size=(270, 1)), rng.normal(1.6, 0.16, size=(30, 1))])
    return problem(ref, dat, 0.15, 12, 0.35, 0.4, 1e-4, rng)


@pytest.fixture(scope="module")
def p3():
    """3-D: reference N(0, I), data with a bump at (1, 1, 1), 20% negative weights."""
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(2400, 3))
    dat = np.vstack([rng.normal(size=(540, 3)), rng.normal(1.0, 0.3, size=(60, 3))])
    return problem(ref, dat, 0.2, 40, 0.8, 1.0, 1e-4, rng)


def exact(p, w=None):
    w = p["w"] if w is None else w
    alpha = O.newton_step_exact(p["ref"], p["dat"], p["centers"], p["sigma"], [p["lam"]], weights=w)
    return alpha, O.nplm_t(p["ref"], p["dat"], p["centers"], p["sigma"], alpha, weights=w)


def assert_step(alpha, t, p):
    want_alpha, want_t = exact(p)
    np.testing.assert_allclose(alpha, want_alpha, rtol=RTOL, atol=RTOL * np.abs(want_alpha).max())
    assert t == pytest.approx(want_t, rel=RTOL)


def test_weights_of_either_sign_are_checked():
    w = _checks.reference_weights(np.array([2.0, -1.0, 0.0]), None, 3, 5)
    assert w.tolist() == [2.0, -1.0, 0.0]
    with pytest.raises(ValueError, match=r"reference_weights must sum to a positive total N\(R\).*sum -1"):
        _checks.reference_weights(np.array([1.0, -2.0, 0.0]), None, 3, 5)
    with pytest.raises(ValueError, match="sum 0 over 3 events"):
        _checks.reference_weights(np.zeros(3), None, 3, 5)
    with pytest.raises(ValueError, match=r"must be finite \(event 1 has nan\)"):
        _checks.reference_weights(np.array([1.0, np.nan, 1.0]), None, 3, 5)
    ref = np.random.default_rng(0).normal(size=(50, 1))
    with pytest.raises(ValueError, match="positive total"):  # the core's own check, past the Python one
        _core.fit_kernel(ref, -np.ones(50), ref[:5], ref[:3], None, 1.0, [1e-3], "newton-step", 1e-6, 100,
                         1e-12, 10, 1e-13, 1, 0)
    with pytest.raises(ValueError, match="positive total"):
        fastnplm.NeuralNPLM(epochs=1).fit(ref, ref[:5], reference_weights=-np.ones(50))


def test_oracle_problems_are_well_conditioned(p1, p3):
    for p in (p1, p3):
        k_nm, k_mm, y, v = O.pooled_problem(p["ref"], p["dat"], p["centers"], p["sigma"], p["w"])
        h = O.hessian(np.zeros(len(p["centers"])), k_nm, k_mm, y, v, p["lam"])
        ev = np.linalg.eigvalsh(h)
        assert ev[0] > 0 and ev[-1] / ev[0] < 1e6
        assert (p["w"] < 0).mean() > 0.1 and (p["center_w"] < 0).sum() >= 2
        # premise: the negative weights matter (their magnitudes, rescaled, give another step)
        t_abs = exact(p, np.abs(p["w"]) * (p["w"].sum() / np.abs(p["w"]).sum()))[1]
        assert abs(exact(p)[1] - t_abs) > 1e-2 * abs(t_abs)


@pytest.mark.parametrize("name", ["p1", "p3"])
@pytest.mark.parametrize("hessian", ["stream", "dense", "spectral", "shared"])
def test_newton_step_matches_the_exact_step(name, hessian, request):
    """Tight CG on every Hessian path meets the dense exact step with the signed weights."""
    p = request.getfixturevalue(name)
    model = fastnplm.KernelNPLM(centers=p["centers"], sigma=p["sigma"], lam=p["lam"], hessian=hessian, **TIGHT)
    res = model.fit(p["ref"], p["dat"], reference_weights=p["w"])
    assert res.converged and res.n_expected == pytest.approx(p["dat"].shape[0])
    assert_step(res.alpha, res.t, p)


@pytest.mark.parametrize("name", ["p1", "p3"])
def test_signed_center_class_weights_scale_the_preconditioner_by_their_magnitude(name, request):
    """Centers drawn from the reference carry their events' signed weights as class weights; every
    solver takes their magnitudes for the preconditioner, and the step stays the exact one."""
    p = request.getfixturevalue(name)
    ref, dat, w, c, cw = p["ref"], p["dat"], p["w"], p["centers"], p["center_w"]
    for dense in (0, 2**31 - 1):
        out = _core.fit_kernel(ref, w, dat, c, cw, p["sigma"], [p["lam"]], "newton-step", 1e-13, 10000, 1e-12, 10,
                               1e-13, 2, dense)
        assert out.converged
        assert_step(out.alpha, out.t, p)
    spectral = SpectralReference(c, cw, p["sigma"], p["lam"], ref, w, 1e-13, 10000, spectral_tol=0.0)
    step = spectral.solve(dat)
    assert step.converged
    assert_step(spectral.alpha(step.beta), spectral.t_values([step])[0], p)
    shared = SharedSolver(c, cw, p["sigma"], p["lam"], ref, w, 1e-13, 10000).fit_many([dat])[0]
    assert shared.converged
    assert_step(shared.alpha, shared.t, p)


def test_newton_solver_matches_the_minimiser(p1):
    """solver="newton" with signed weights: the objective stays convex where the positive weights
    dominate, and the damped Newton iteration reaches the oracle's minimiser."""
    p = p1
    model = fastnplm.KernelNPLM(centers=p["centers"], sigma=p["sigma"], lam=p["lam"], solver="newton", **TIGHT)
    res = model.fit(p["ref"], p["dat"], reference_weights=p["w"])
    alpha = O.minimise_J(p["ref"], p["dat"], p["centers"], p["sigma"], p["lam"], weights=p["w"])
    assert res.converged
    np.testing.assert_allclose(res.alpha, alpha, rtol=RTOL, atol=RTOL * np.abs(alpha).max())
    assert res.t == pytest.approx(O.nplm_t(p["ref"], p["dat"], p["centers"], p["sigma"], alpha, weights=p["w"]),
                                  rel=RTOL)


@pytest.fixture(scope="module")
def indefinite():
    """A cluster of reference events weighing -3 around the first center, no data near it, a tiny
    penalty: the step's Hessian has a negative direction there."""
    rng = np.random.default_rng(8)
    ref = rng.normal(size=(600, 2))
    centers = ref[:20]
    w = np.where(((ref - centers[0]) ** 2).sum(1) < 0.25, -3.0, 1.0)
    dat = rng.normal(size=(150, 2)) + [4.0, 0.0]
    assert w.sum() > 0
    return ref, dat, w, centers


@pytest.mark.parametrize("hessian", ["stream", "dense", "spectral", "shared"])
@pytest.mark.parametrize("cg_tol", [None, 1e-13])
def test_indefinite_hessian_is_an_error_that_names_it(indefinite, hessian, cg_tol):
    ref, dat, w, centers = indefinite
    model = fastnplm.KernelNPLM(centers=centers, sigma=0.3, lam=1e-10, hessian=hessian, cg_tol=cg_tol)
    with pytest.raises(NotPositiveDefiniteError, match=NOT_PD) as err:
        model.fit(ref, dat, reference_weights=w)
    assert isinstance(err.value, ValueError) and "larger lam" in str(err.value)
    # the same problem with the weights' magnitudes is fine
    model.fit(ref, dat, reference_weights=np.abs(w))


def test_solvers_shared_across_toys_raise_it_too(indefinite):
    ref, dat, w, centers = indefinite
    spectral = SpectralReference(centers, None, 0.3, 1e-10, ref, w, 1e-13, 1000)
    with pytest.raises(NotPositiveDefiniteError, match=NOT_PD):
        spectral.t_batch([dat])
    shared = SharedSolver(centers, w[:20], 0.3, 1e-10, ref, w, 1e-13, 1000)
    with pytest.raises(NotPositiveDefiniteError, match=NOT_PD):
        shared.t_batch([dat])


def test_neural_loss_and_gradient_with_signed_weights_match_numpy(p1):
    ref, dat, w = p1["ref"], p1["dat"], p1["w"]
    hidden = [4]
    model = fastnplm.NeuralNPLM(hidden=hidden, epochs=300, lr=0.02, clip=5.0, seed=3, threads=2)
    res = model.fit(ref, dat, reference_weights=w)
    p = res.params
    w1, b1, w2, b2 = p[:4].reshape(4, 1), p[4:8], p[8:12].reshape(1, 4), p[12]

    def numpy_loss(q):
        def f(x):
            return (1 / (1 + np.exp(-(x @ q[0].T + q[1]))) @ q[2].T)[:, 0] + q[3]
        return float(w @ np.expm1(f(ref)) - f(dat).sum())

    loss = numpy_loss((w1, b1, w2, b2))
    assert res.t == pytest.approx(-2 * loss, rel=1e-10)
    core_loss, grad = _core.mlp_loss_grad(ref, w, [dat], hidden, p[None, :])
    assert core_loss[0] == pytest.approx(loss, rel=1e-12)
    # gradient against central differences of the numpy loss
    h = 1e-6
    for j in range(p.size):
        e = np.zeros_like(p)
        e[j] = h
        qp, qm = p + e, p - e
        fd = (numpy_loss((qp[:4].reshape(4, 1), qp[4:8], qp[8:12].reshape(1, 4), qp[12]))
              - numpy_loss((qm[:4].reshape(4, 1), qm[4:8], qm[8:12].reshape(1, 4), qm[12]))) / (2 * h)
        assert grad[0, j] == pytest.approx(fd, rel=1e-5, abs=1e-5)
    # the exact-Hessian pass (optimizer="newton") takes them too, with the same loss and gradient
    l2, g2, h2 = _core.mlp_loss_grad_hess(ref, w, dat, hidden, p)
    assert l2 == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(g2, grad[0], rtol=1e-10, atol=1e-10)
    assert np.allclose(h2, h2.T)


def test_permutation_fast_path_equals_the_refit():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(1200, 2)), rng.normal(size=(300, 2))
    w = np.where(rng.random(1200) < 0.15, -1.0, 1.0)
    kw = dict(M=30, sigma=0.8, lam=1e-4, cg_tol=1e-12)
    fast = permutation_test(fastnplm.KernelNPLM(**kw), a, b, permutations=6, seed=4, weights_a=w, fast=True)
    refit = permutation_test(fastnplm.KernelNPLM(**kw), a, b, permutations=6, seed=4, weights_a=w, fast=False)
    # the fast path solves the step exactly, the refit's CG stops at 1e-12
    np.testing.assert_allclose(fast.t_obs, refit.t_obs, rtol=1e-8)
    np.testing.assert_allclose(fast.null.t, refit.null.t, rtol=1e-8)
    # weights so wild that negative ones dominate: the exact step's Hessian is indefinite, and
    # a relabelling whose A-weights sum to <= 0 is named
    wild = np.where(np.arange(1200) < 60, 100.0, -4.9)
    with pytest.raises(NotPositiveDefiniteError, match="relabelling's Hessian has eigenvalue"):
        permutation_test(fastnplm.KernelNPLM(**kw), a, b, permutations=20, seed=1, weights_a=wild, fast=True)
    base = np.concatenate([wild, np.ones(300)])
    is_a = np.zeros(1500, bool)
    is_a[60:1260] = True
    with pytest.raises(ValueError, match="relabelling puts in sample A have weights summing to -5526 <= 0"):
        _a_scale(base, is_a)


def test_calibration_test_takes_signed_weights(p1):
    """Calibration.test passes the observed reference's weights to the calibrated model's fit."""
    ref, dat, w = p1["ref"], p1["dat"], p1["w"]
    pool = np.random.default_rng(9).exponential(size=(5000, 1))
    model = fastnplm.KernelNPLM(M=12, sigma=0.4, lam=1e-4)
    cal = fastnplm.calibrate(model, ref, pool, toys=4, n_expected=300.0, seed=1, fast=False)
    out = cal.test(ref, dat, reference_weights=w)
    assert out["per_width"][0]["t"] == cal.model().fit(ref, dat, reference_weights=w).t
    assert out["settings"]["n_expected"] == pytest.approx(w.sum())


@pytest.mark.parametrize("fast", [False, True])
def test_toys_with_signed_reference_weights(p1, fast, tmp_path):
    """calibrate(reference_weights=w): toy k is a fit of its own data (drawn as toy_rng(seed, k)
    draws it: Poisson(sum w) events from the pool) against the reference with weights w, on the
    plain and on the shared-reference path; the store records the weights' hash, so Calibration.test
    and Monitor take only the same weights."""
    from fastnplm.calibration._toys import toy_rng

    ref, dat, w = p1["ref"], p1["dat"], p1["w"]
    pool = np.random.default_rng(9).exponential(size=(5000, 1))
    model = fastnplm.KernelNPLM(M=12, sigma=0.4, lam=1e-4, **TIGHT)
    store = tmp_path / "toys.jsonl"
    cal = fastnplm.calibrate(model, ref, pool, toys=5, reference_weights=w, seed=3, fast=fast, store=store,
                             batch=2)
    assert cal.settings["n_expected"] == pytest.approx(w.sum()) and cal.settings["path"] == (
        "spectral" if fast else "plain")
    fitter = cal.model()
    for k in range(5):
        rng = toy_rng(3, k)
        x = pool[rng.choice(pool.shape[0], size=int(rng.poisson(w.sum())), replace=False)]
        assert cal.t[k, 0] == pytest.approx(fitter.fit(ref, x, reference_weights=w).t, rel=1e-9, abs=1e-9)
    # resuming with other weights is refused; the same weights resume to the same toys
    with pytest.raises(ValueError, match="store"):
        fastnplm.calibrate(model, ref, pool, toys=5, reference_weights=np.abs(w) * (w.sum() / np.abs(w).sum()),
                           seed=3, fast=fast, store=store)
    again = fastnplm.calibrate(model, ref, pool, toys=5, reference_weights=w, seed=3, fast=fast, store=store)
    np.testing.assert_array_equal(again.t, cal.t)
    out = cal.test(ref, dat, reference_weights=w)
    assert out["per_width"][0]["t"] == fitter.fit(ref, dat, reference_weights=w).t
    mon = fastnplm.Monitor(cal, ref, reference_weights=w)
    assert mon.test(dat)["t"] == pytest.approx(out["per_width"][0]["t"], rel=1e-9)
    for bad in (None, w[::-1].copy()):
        with pytest.raises(ValueError, match="reference_weights"):
            cal.test(ref, dat, reference_weights=bad)
        with pytest.raises(ValueError, match="reference_weights"):
            fastnplm.Monitor(cal, ref, reference_weights=bad)
    with pytest.raises(ValueError, match="not both"):
        fastnplm.calibrate(model, ref, pool, toys=2, reference_weights=w, n_expected=300.0)


def test_toys_with_equal_given_weights_are_the_toys_of_n_expected():
    rng = np.random.default_rng(4)
    ref, pool = rng.exponential(size=(2000, 1)), rng.exponential(size=(5000, 1))
    for model in (fastnplm.KernelNPLM(M=10, sigma=0.4, lam=1e-4),
                  fastnplm.NeuralNPLM(hidden=(2,), clip=3.0, optimizer="lbfgsb", epochs=200, threads=1)):
        plain = fastnplm.calibrate(model, ref, pool, toys=3, n_expected=150.0, seed=2)
        given = fastnplm.calibrate(model, ref, pool, toys=3, reference_weights=np.full(2000, 150.0 / 2000), seed=2)
        np.testing.assert_array_equal(given.t, plain.t)
        assert "reference_weights_sha256" in given.settings and "reference_weights_sha256" not in plain.settings


def test_preprocessing_takes_the_signed_weighted_moments(p1):
    ref, w = p1["ref"], p1["w"]
    pre = fastnplm.preprocessing.Standardize().fit(ref, weights=w)
    mean = w @ ref[:, 0] / w.sum()
    assert pre.offset_[0] == pytest.approx(mean, rel=1e-12)
    assert pre.scale_[0] == pytest.approx(np.sqrt(w @ (ref[:, 0] - mean) ** 2 / w.sum()), rel=1e-12)
    with pytest.raises(ValueError, match="positive total"):
        fastnplm.preprocessing.Standardize().fit(ref, weights=-w)


def test_baselines_with_signed_weights():
    rng = np.random.default_rng(6)
    ref, dat = rng.normal(size=(3000, 1)), rng.normal(0.2, 1.0, size=(400, 1))
    w = signed(3000, 400, 0.15, rng)
    # KS: sup |F_D - F_R| by brute force on the pooled points, F_R the signed-weight ECDF
    pts = np.sort(np.concatenate([ref[:, 0], dat[:, 0]]))
    f_r = np.array([w[ref[:, 0] <= x].sum() for x in pts]) / w.sum()
    f_d = np.searchsorted(np.sort(dat[:, 0]), pts, side="right") / dat.shape[0]
    got = bl.KolmogorovSmirnov().per_feature(ref, dat, w)["statistic"][0]
    assert got == pytest.approx(np.abs(f_d - f_r).max(), rel=1e-12)
    # chi2: expected counts are the signed weights summed per bin, all >= 0 here
    chi2 = bl.BinnedChi2(bins=10)
    state = chi2._prepare_feature(ref[:, 0], w)
    idx = np.searchsorted(state[1], ref[:, 0], side="left")
    np.testing.assert_allclose(state[2] * w.sum(), np.bincount(idx, weights=w, minlength=10), rtol=1e-12)
    assert np.all(np.diff(state[1]) >= 0) and np.isfinite(chi2.statistic(ref, dat, w))
    assert np.isfinite(bl.BumpHunter(bins=20, range=(-2.5, 2.5)).statistic(ref, dat, w))
    # a bin whose weights sum below zero, and the methods that cannot take negative weights
    neg = w.copy()
    neg[ref[:, 0] > 2.0] = -1.0
    with pytest.raises(ValueError, match=r"BumpHunter: the reference weights sum to .* < 0 in bin 18 \[2, 2.25\)"):
        bl.BumpHunter(bins=20, range=(-2.5, 2.5)).statistic(ref, dat, neg)
    with pytest.raises(ValueError, match="AndersonDarling does not take negative reference weights"):
        bl.AndersonDarling().statistic(ref, dat, w)
    with pytest.raises(ValueError, match="FixedBackgroundGMM does not take negative reference weights"):
        bl.FixedBackgroundGMM().fit_background(ref, w)
