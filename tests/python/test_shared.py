"""hessian="shared" (fastnplm.models._shared, cpp/src/kernel_shared.cpp): the newton-step estimator for
many datasets against one reference, checked against the dense oracle, the core's streamed fit,
and itself across batches and thread counts; and the calibration's shared path."""
import numpy as np
import pytest

import fastnplm
from fastnplm import _core
from fastnplm.models._shared import SharedSolver

import oracle

SIGMA, LAM = 0.5, 1e-5


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    ref = rng.standard_normal((3000, 2))
    datasets = [rng.standard_normal((rng.poisson(400), 2)) + [0.3 * k, 0.0] for k in range(5)]
    pool = rng.standard_normal((5000, 2))
    return ref, datasets, pool


def _model(**kw):
    return fastnplm.KernelNPLM(M=60, sigma=SIGMA, lam=LAM, seed=3, **kw)


def test_primitives_against_numpy():
    rng = np.random.default_rng(0)
    x, c, w = rng.standard_normal((700, 3)), rng.standard_normal((37, 3)), rng.uniform(0.5, 2.0, 700)
    v = rng.standard_normal((37, 19))
    k = oracle.gaussian_kernel(x, c, 0.8)
    got = _core.kernel_gram_mm(x, c, 0.8, v, w, 2)
    np.testing.assert_allclose(got, k.T @ (w[:, None] * (k @ v)), rtol=1e-12, atol=1e-12 * np.abs(got).max())
    # a column's product does not depend on the others
    one = _core.kernel_gram_mm(x, c, 0.8, np.ascontiguousarray(v[:, 5:6]), w, 1)
    assert np.array_equal(one[:, 0], got[:, 5])
    # stored features: one column (the Monitor's pass, its own loop) gives the bits of the same
    # column inside a wider call, for any row count (a remainder of rows past the 8-row blocks)
    feats = rng.standard_normal((1003, 23)) * 0.1
    wf = np.resize(w, 1003)
    many = _core.features_expm1_sum(feats, np.ascontiguousarray(v[:23, :5]), wf, 2)
    for q in range(5):
        one = _core.features_expm1_sum(feats, np.ascontiguousarray(v[:23, q:q + 1]), wf, 1)
        assert one[0] == many[q]
    np.testing.assert_allclose(many, (wf[:, None] * np.expm1(feats @ v[:23, :5])).sum(0), rtol=1e-12)
    small = 0.01 * v
    got = _core.kernel_mm_expm1_sum(x, c, 0.8, small, w, 2)
    np.testing.assert_allclose(got, (w[:, None] * np.expm1(k @ small)).sum(0), rtol=1e-12)


def test_exact_step_matches_the_dense_oracle(problem):
    """With a tight cg_tol the shared solver returns the exact Newton step from f = 0, whatever
    size its preconditioner was built for (n_expected != N_D here)."""
    ref, datasets, _ = problem
    model = _model(hessian="shared", cg_tol=1e-13, max_iter=5000)
    for data in datasets[:3]:
        res = model.fit(ref, data, n_expected=420.0)
        alpha = oracle.newton_step_exact(ref, data, res.centers, SIGMA, [LAM], n_expected=420.0)
        t = oracle.nplm_t(ref, data, res.centers, SIGMA, alpha, n_expected=420.0)
        assert res.converged
        assert res.t == pytest.approx(t, rel=1e-7)
        f = oracle.predict(data, res.centers, SIGMA, alpha)
        np.testing.assert_allclose(res.f_data, f, rtol=0, atol=1e-6 * np.abs(f).max())


def test_agrees_with_the_streamed_fit(problem):
    """At the published tolerance the two early-stopped steps differ only through the
    preconditioner's n and rounding: stated tolerance 1e-4 relative in t (observed ~1e-5);
    the objective and the iteration counts agree too."""
    ref, datasets, _ = problem
    for data in datasets:
        for n_exp in (None, 380.0):
            a = _model(hessian="shared").fit(ref, data, n_expected=n_exp)
            b = _model(hessian="stream").fit(ref, data, n_expected=n_exp)
            assert a.t == pytest.approx(b.t, rel=1e-4)
            assert a.objective == pytest.approx(b.objective, rel=1e-6)
            assert abs(a.cg_iterations[0] - b.cg_iterations[0]) <= 2
            np.testing.assert_allclose(a.f_reference, b.f_reference, atol=1e-3 * np.abs(b.f_reference).max())


def test_independent_of_batch_and_threads(problem):
    ref, datasets, _ = problem
    w = np.full(ref.shape[0], 400.0 / ref.shape[0])
    centers = ref[:60]

    def solver(threads):
        return SharedSolver(centers, w[:60], SIGMA, LAM, ref, w, np.sqrt(1e-7), 1000, threads)

    together = solver(2).fit_many(datasets)
    alone = [solver(2).fit_many([d])[0] for d in datasets]
    reversed_one_thread = solver(1).fit_many(datasets[::-1])[::-1]
    for a, b, c in zip(together, alone, reversed_one_thread):
        assert a.t == b.t == c.t
        assert np.array_equal(a.alpha, b.alpha) and np.array_equal(a.alpha, c.alpha)
        assert a.cg_iterations == b.cg_iterations == c.cg_iterations


def test_bad_input():
    with pytest.raises(ValueError, match="shared"):
        fastnplm.KernelNPLM(M=10, solver="newton", hessian="shared")
    with pytest.raises(ValueError, match="CPU"):
        fastnplm.KernelNPLM(M=10, hessian="shared", backend="cuda")
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((200, 2))
    with pytest.raises(ValueError, match="lam > 0"):
        fastnplm.KernelNPLM(M=10, lam=0.0, hessian="shared").fit(ref, ref[:50])
    solver = SharedSolver(ref[:10], None, 1.0, 1e-6, ref, np.ones(200), 1e-6, 100)
    with pytest.raises(ValueError, match="feature dimension"):
        solver.fit_many([rng.standard_normal((20, 3))])
    with pytest.raises(ValueError, match="empty"):
        solver.fit_many([np.empty((0, 2))])


def test_calibration_on_the_shared_path(problem, tmp_path):
    """Toys on the shared path are the model's own fits toy by toy, resume from a store, and
    the calibration hands the observed data to the same solver."""
    ref, _, pool = problem
    model = _model(hessian="shared")
    store = tmp_path / "s.fnplm"
    cal = fastnplm.calibrate(model, ref, pool, toys=10, n_expected=400.0, seed=5, batch=4, store=store)
    assert cal.settings["path"] == "shared" and cal.model().hessian == "shared"
    rng = fastnplm.calibration.toy_rng(5, 7)
    data = pool[rng.choice(pool.shape[0], rng.poisson(400.0), replace=False)]
    assert cal.t[7, 0] == model.fit(ref, data, n_expected=400.0).t  # bit for bit: batches do not matter
    resumed = fastnplm.calibrate(model, ref, pool, toys=14, n_expected=400.0, seed=5, batch=3, store=store)
    assert np.array_equal(resumed.t[:10], cal.t)
    out = cal.test(ref, data, n_expected=400.0)
    assert out["per_width"][0]["t"] == cal.t[7, 0]


def test_monitor_on_the_shared_path(problem):
    """Monitor builds the shared solver once; each batch's t is the calibrated model's fit."""
    ref, datasets, pool = problem
    cal = fastnplm.calibrate(_model(hessian="shared"), ref, pool, toys=6, n_expected=400.0, seed=2)
    mon = fastnplm.Monitor(cal, ref)
    assert mon.shared is not None
    for batch in datasets[:2]:
        out = mon.test(batch)
        assert out["t"] == cal.model().fit(ref, batch, n_expected=400.0).t
        assert out["p"] == (1 + int((cal.t[:, 0] >= out["t"]).sum())) / 7
