"""Public API behaviour: invariances, dtypes, the width heuristic, bad input, warnings."""
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import pdist

import fastnplm
import oracle


def _problem(seed=0, n_r=4000, n_d=400, d=2):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n_r, d))
    dat = np.concatenate([rng.normal(size=(n_d - 20, d)), rng.normal(1.5, 0.2, size=(20, d))])
    return ref, dat


def test_thread_count_does_not_change_results():
    ref, dat = _problem()
    fits = [fastnplm.KernelNPLM(M=80, sigma=1.0, lam=1e-5, threads=k).fit(ref, dat) for k in (1, 2, 3)]
    for r in fits[1:]:
        np.testing.assert_allclose(r.alpha, fits[0].alpha, rtol=1e-12, atol=0)
        assert abs(r.t - fits[0].t) <= 1e-12 * abs(fits[0].t)


def test_event_order_does_not_change_results():
    # With the same centers, permuting events only reorders sums: agreement to roundoff,
    # amplified in alpha by the conditioning of K_MM (alpha is large and cancels in f).
    # The streamed Hessian is the sensitive one here (alpha moves ~1e-7 relative).
    ref, dat = _problem(1)
    rng = np.random.default_rng(5)
    centers = ref[rng.choice(len(ref), 60, replace=False)]
    model = fastnplm.KernelNPLM(sigma=0.8, lam=1e-5, centers=centers, cg_tol=1e-12, hessian="stream")
    a = model.fit(ref, dat)
    b = model.fit(ref[rng.permutation(len(ref))], dat[rng.permutation(len(dat))])
    np.testing.assert_allclose(b.alpha, a.alpha, rtol=1e-6, atol=1e-8 * np.abs(a.alpha).max())
    np.testing.assert_allclose(b.predict(dat), a.predict(dat), rtol=1e-8, atol=1e-10)
    assert b.t == pytest.approx(a.t, rel=1e-9)


def test_float32_input_agrees_with_float64():
    # float32 inputs are converted to float64 (a visible copy); the only difference is the
    # rounding of the inputs themselves (relative 6e-8), which moves t by far less than 1e-4.
    ref, dat = _problem(2)
    model = fastnplm.KernelNPLM(M=50, sigma=1.0, lam=1e-5, cg_tol=1e-10)
    r64 = model.fit(ref, dat)
    r32 = model.fit(ref.astype(np.float32), dat.astype(np.float32))
    assert r32.t == pytest.approx(r64.t, rel=1e-4)
    np.testing.assert_allclose(r32.predict(dat[:50]), r64.predict(dat[:50]), rtol=1e-3, atol=1e-4)


def test_one_dimensional_arrays_are_single_feature_events():
    rng = np.random.default_rng(3)
    ref, dat = rng.exponential(size=3000), rng.exponential(size=300)
    a = fastnplm.KernelNPLM(M=30, sigma=0.3).fit(ref, dat)
    b = fastnplm.KernelNPLM(M=30, sigma=0.3).fit(ref[:, None], dat[:, None])
    assert a.t == b.t and a.centers.shape == (30, 1)


def test_seed_reproduces_centers_and_result():
    ref, dat = _problem(4)
    a = fastnplm.KernelNPLM(M=40, lam=1e-5, seed=7).fit(ref, dat)
    b = fastnplm.KernelNPLM(M=40, lam=1e-5, seed=7).fit(ref, dat)
    c = fastnplm.KernelNPLM(M=40, lam=1e-5, seed=8).fit(ref, dat)
    assert np.array_equal(a.centers, b.centers) and a.t == b.t
    assert not np.array_equal(a.centers, c.centers)
    pooled = np.concatenate([ref, dat])
    # every center is an event of the pooled sample, no event twice
    idx = [np.flatnonzero((pooled == c_).all(axis=1))[0] for c_ in a.centers]
    assert len(set(idx)) == 40


def test_sigma_heuristic_matches_pdist():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(700, 3))
    assert fastnplm.models.sigma_heuristic(x, quantile=0.9) == pytest.approx(np.quantile(pdist(x), 0.9), rel=1e-12)
    assert fastnplm.models.sigma_heuristic(x, quantile=0.5) == pytest.approx(np.quantile(pdist(x), 0.5), rel=1e-12)
    # subsampling: the same max_points events drawn with the seed
    sub = x[np.sort(np.random.default_rng(1).choice(700, 200, replace=False))]
    assert fastnplm.models.sigma_heuristic(x, max_points=200, seed=1) == pytest.approx(np.quantile(pdist(sub), 0.9), rel=1e-12)


def test_sigma_none_uses_heuristic():
    ref, dat = _problem(7)
    r = fastnplm.KernelNPLM(M=30, seed=3).fit(ref, dat)
    assert r.sigma == fastnplm.models.sigma_heuristic(ref, seed=3)


def test_non_convergence_is_reported():
    ref, dat = _problem(8)
    with pytest.warns(fastnplm.models.ConvergenceWarning, match="did not converge"):
        r = fastnplm.KernelNPLM(M=80, sigma=1.0, lam=1e-8, cg_tol=1e-14, max_iter=2).fit(ref, dat)
    assert r.converged is False and r.cg_iterations == [2]


def test_converged_fit_does_not_warn():
    ref, dat = _problem(9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = fastnplm.KernelNPLM(M=50, sigma=1.0, lam=1e-5).fit(ref, dat)
    assert r.converged and np.isfinite(r.t) and r.seconds > 0


REF, DAT = _problem(10, n_r=500, n_d=50)


@pytest.mark.parametrize("ref, dat, kwargs, match", [
    (np.where(np.arange(1000).reshape(500, 2) == 7, np.nan, REF), DAT, {}, "reference contains NaN"),
    (REF, np.where(np.arange(100).reshape(50, 2) == 3, np.inf, DAT), {}, "data contains NaN or inf"),
    (REF.reshape(1, 500, 2), DAT, {}, "must be a 2-D array"),
    (REF, DAT[:, :1], {}, "data has 1 features but the reference has 2"),
    (REF[:0], DAT, {}, "reference is empty"),
    (REF, DAT[:0], {}, "data is empty"),
    (REF, DAT, {"reference_weights": -1.0}, "reference_weights must sum to a positive total"),
    (REF, DAT, {"reference_weights": np.r_[np.ones(499), np.nan]}, "event 499"),
    (REF, DAT, {"reference_weights": np.ones(3)}, r"shape \(500,\)"),
    (REF, DAT, {"reference_weights": 1.0, "n_expected": 50}, "not both"),
    (REF, DAT, {"n_expected": 0}, "n_expected must be finite and > 0"),
])
def test_bad_data_raises_value_error(ref, dat, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastnplm.KernelNPLM(M=10, sigma=1.0).fit(ref, dat, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"M": 551, "center_pool": "pooled"}, "M=551 is larger than the pooled sample"),
    ({"M": 501}, "M=501 is larger than the reference sample"),
    ({"center_pool": "data"}, "unknown center_pool 'data'"),
    ({"sigma": 0.0}, "sigma must be finite and > 0"),
    ({"sigma": np.inf}, "sigma must be finite and > 0"),
    ({"lam": -1e-6}, "lam must be finite and >= 0"),
    ({"solver": "lbfgs"}, "unknown solver 'lbfgs'"),
    ({"hessian": "exact"}, "unknown hessian mode 'exact'"),
    ({"penalties": [1e-3, 1e-4]}, "penalties must end at lam"),
    ({"cg_tol": 0}, "cg_tol must be finite and > 0"),
    ({"max_iter": 0}, "max_iter must be >= 1"),
    ({"threads": 0}, "threads must be >= 1"),
    ({"centers": np.ones((5, 3))}, "centers have 3 features"),
])
def test_bad_settings_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastnplm.KernelNPLM(**{"M": 10, "sigma": 1.0, **kwargs}).fit(REF, DAT)


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="real numeric array"):
        fastnplm.KernelNPLM(M=10, sigma=1.0).fit(REF.astype(complex), DAT)
    with pytest.raises(TypeError, match="M must be an integer"):
        fastnplm.KernelNPLM(M=10.5)


def test_core_errors_cross_as_value_error():
    with pytest.raises(ValueError, match="1-D array of length"):
        fastnplm._core.kernel_mv(REF, REF[:5], 1.0, np.ones(4))


def test_dense_and_streamed_hessian_give_the_same_step():
    # Same Newton step, two ways of applying the Hessian; measured 5e-12 relative in t.
    ref, dat = _problem(11)
    kw = dict(M=40, sigma=1.5, lam=1e-4, cg_tol=1e-12)
    a = fastnplm.KernelNPLM(hessian="stream", **kw).fit(ref, dat)
    b = fastnplm.KernelNPLM(hessian="dense", **kw).fit(ref, dat)
    assert b.t == pytest.approx(a.t, rel=1e-9)
    np.testing.assert_allclose(b.predict(dat), a.predict(dat), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("center_pool", ["pooled", "reference"])
def test_spectral_hessian_gives_the_same_step(center_pool):
    # Pooled centers carry unequal class weights (1 for data, w for reference): the spectral
    # preconditioner is then diagonalised in the kept directions. Same step as the core's, to
    # roundoff x conditioning: cond(K_MM) ~1e11 here. Judged against the step solved in long
    # double: measured errors in t, dense 1e-9 and spectral 1.5e-8 (pooled) / 2e-10
    # (reference) on an AVX-512 machine, where spectral's eigendecompositions run other
    # OpenBLAS kernels than on AVX2 (5e-9 there). Tolerances ~7x the largest measured.
    ref, dat = _problem(11)
    kw = dict(M=40, sigma=1.5, lam=1e-4, cg_tol=1e-12, center_pool=center_pool)
    a = fastnplm.KernelNPLM(hessian="dense", **kw).fit(ref, dat)
    b = fastnplm.KernelNPLM(hessian="spectral", **kw).fit(ref, dat)
    truth = oracle.first_step_t_longdouble(ref, dat, a.centers, 1.5, 1e-4, jitter=1e-13)  # Falkon's jitter
    assert a.t == pytest.approx(truth, rel=1e-8) and b.t == pytest.approx(truth, rel=1e-7)
    assert b.objective == pytest.approx(a.objective, rel=1e-7)
    # f moves with the same error (measured 7e-8 at most, on |f| <= 0.3)
    np.testing.assert_allclose(b.predict(dat), a.predict(dat), rtol=1e-5, atol=5e-7)
    np.testing.assert_allclose(b.f_reference, a.f_reference, rtol=1e-5, atol=5e-7)
    # early-stopped at the published tolerance: the same CG iterates
    c = fastnplm.KernelNPLM(hessian="dense", **{**kw, "cg_tol": None}).fit(ref, dat)
    e = fastnplm.KernelNPLM(hessian="spectral", **{**kw, "cg_tol": None}).fit(ref, dat)
    assert e.cg_iterations == c.cg_iterations and e.t == pytest.approx(c.t, rel=1e-7)
    with pytest.raises(ValueError, match="lam > 0"):
        fastnplm.KernelNPLM(hessian="spectral", M=40, sigma=1.5, lam=0.0).fit(ref, dat)


def test_spectral_tol_trades_kept_directions_for_accuracy():
    # 1D, many centers per width: K_MM has few eigenvalues above the jitter. Dropping the
    # directions without reference energy moves the exact step's t by little; keeping all
    # (spectral_tol=0) is the core's step to roundoff x conditioning.
    from fastnplm.models._spectral import SpectralReference
    rng = np.random.default_rng(5)
    ref, dat = rng.exponential(size=(20000, 1)), rng.exponential(size=(200, 1))
    kw = dict(M=200, sigma=0.3, lam=1e-6, center_pool="reference", cg_tol=1e-12, max_iter=20000)
    exact = fastnplm.KernelNPLM(hessian="dense", **kw).fit(ref, dat, n_expected=200).t
    kept, dev = [], []
    for tol in (1e-6, 1e-8, 0.0):
        m = fastnplm.KernelNPLM(hessian="spectral", spectral_tol=tol, **kw)
        dev.append(abs(m.fit(ref, dat, n_expected=200).t / exact - 1))
        c = m.select_centers(ref, dat, np.full(20000, 0.01))
        kept.append(SpectralReference(c[0], c[1], 0.3, 1e-6, ref, np.full(20000, 0.01), 1e-12, 100,
                                      spectral_tol=tol).r)
    assert kept[0] < kept[1] < kept[2] == 200
    # measured: 47, 139, 200 kept; 6e-7, 3e-8, 2e-8 (the roundoff floor: K_MM is singular to
    # working precision here, see fastnplm/_spectral.py)
    assert dev[2] < 1e-7 and dev[1] < 1e-7 and dev[0] < 1e-5
    with pytest.raises(ValueError, match="spectral_tol"):
        fastnplm.KernelNPLM(spectral_tol=-1.0)


def test_features_expm1_sum_matches_numpy():
    rng = np.random.default_rng(3)
    f, v, w = rng.normal(size=(1001, 7)) * 0.1, rng.normal(size=(7, 5)), rng.random(1001)
    got = fastnplm._core.features_expm1_sum(f, v, w)
    np.testing.assert_allclose(got, w @ np.expm1(f @ v), rtol=1e-12)
    one = fastnplm._core.features_expm1_sum(f, np.ascontiguousarray(v[:, 2:3]), w)
    assert one[0] == got[2]  # a column's sum does not depend on its neighbours


def test_feature_gram_matches_numpy():
    rng = np.random.default_rng(12)
    x, c = rng.normal(size=(700, 3)), rng.normal(size=(20, 3))
    T = np.linalg.cholesky(fastnplm._core.kernel_matrix(c, c, 1.1) + 1e-8 * np.eye(20)).T  # upper
    w, u = rng.random(700), rng.normal(size=700)
    W, g = fastnplm._core.feature_gram(x, c, 1.1, np.ascontiguousarray(T.T), w, u)
    B = fastnplm._core.kernel_matrix(x, c, 1.1) @ np.linalg.inv(T)
    np.testing.assert_allclose(W, B.T @ (w[:, None] * B), rtol=1e-9, atol=1e-9 * np.abs(W).max())
    np.testing.assert_allclose(g, B.T @ u, rtol=1e-9, atol=1e-9 * np.abs(g).max())


@pytest.mark.parametrize("hessian", ["stream", "dense"])
def test_event_order_invariance_in_both_hessian_modes(hessian):
    ref, dat = _problem(13)
    rng = np.random.default_rng(2)
    centers = ref[rng.choice(len(ref), 40, replace=False)]
    model = fastnplm.KernelNPLM(sigma=1.0, lam=1e-5, centers=centers, cg_tol=1e-12, hessian=hessian)
    a = model.fit(ref, dat)
    b = model.fit(ref[rng.permutation(len(ref))], dat[rng.permutation(len(dat))])
    assert b.t == pytest.approx(a.t, rel=1e-9)


def test_reference_center_pool_draws_from_the_reference_only():
    ref, dat = _problem(14)
    a = fastnplm.KernelNPLM(M=30, sigma=1.0, center_pool="reference", seed=2).fit(ref, dat)
    b = fastnplm.KernelNPLM(M=30, sigma=1.0, center_pool="reference", seed=2).fit(ref, dat[:100])
    assert np.array_equal(a.centers, b.centers)  # independent of the data
    assert all((ref == c).all(axis=1).any() for c in a.centers)
    with pytest.raises(ValueError, match="unknown center_pool"):
        fastnplm.KernelNPLM(center_pool="data")
