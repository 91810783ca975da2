"""Nuisance parameters: shape coefficients against the exact ratio of the 1D toy, Delta against
its closed form, tau against the fit without nuisances, bad input."""
import numpy as np
import pytest
from scipy import optimize

import fastnplm
from fastnplm.models import Nuisance, learn_coefficients

S = 0.15  # nuisance width of the 1D toy of the "imperfect machine" paper


def _scaled_exp(nu, n, rng):
    """n(x|R_nu) of the 1D toy: Exp(1) scaled by e^nu, so log r = -nu - x (e^-nu - 1)."""
    return rng.exponential(scale=np.exp(nu), size=(n, 1))


@pytest.fixture(scope="module")
def coefficients():
    rng = np.random.default_rng(0)
    samples = {nu: _scaled_exp(nu, 50000, rng) for nu in (0.0, -2 * S, -S, S, 2 * S)}
    return learn_coefficients(samples, order=2, M=40, sigma=1.0, seed=0)


def test_learnt_log_ratio_matches_the_exact_one(coefficients):
    # exact: delta_1 = x - 1, delta_2 = -x. 50000 events per sample: the statistical error of
    # log r at nu = S is ~ S * (few 1e-2) in the bulk; measured max 0.011 and 0.020.
    assert coefficients.info["converged"]
    x = np.linspace(0.1, 3.0, 30)[:, None]
    d = coefficients(x)
    for nu in (-S, S):
        learnt = nu * d[0] + 0.5 * nu * nu * d[1]
        exact = -nu - x[:, 0] * (np.exp(-nu) - 1)
        assert np.abs(learnt - exact).max() < 0.04
    np.testing.assert_allclose(d[0], x[:, 0] - 1, atol=0.25)  # the first coefficient itself


def test_coefficients_save_and_load(coefficients, tmp_path):
    coefficients.save(tmp_path / "c.npz")
    back = fastnplm.models.ShapeCoefficients.load(tmp_path / "c.npz")
    x = np.linspace(0, 4, 9)
    np.testing.assert_array_equal(back(x), coefficients(x))
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="not a saved"):
        fastnplm.models.ShapeCoefficients.load(tmp_path / "other.npz")


def test_delta_of_a_normalisation_nuisance_is_its_closed_form():
    # log r = nu: Delta = -2 min_nu [N(R)(e^nu - 1) - N_D nu + ((nu - A)^2 - A^2)/(2 s^2)]
    rng = np.random.default_rng(1)
    ref, data = rng.exponential(size=(5000, 1)), rng.exponential(size=(230, 1))
    for aux in (0.0, 0.05):
        d, nu = fastnplm.models.delta_statistic(ref, data, [Nuisance("n", 0.1)], n_expected=200.0, auxiliary={"n": aux})
        obj = lambda v, a=aux: 200.0 * np.expm1(v) - 230 * v + ((v - a) ** 2 - a**2) / (2 * 0.01)  # noqa: E731
        best = optimize.minimize_scalar(obj, bounds=(-1, 1), method="bounded", options={"xatol": 1e-12})
        assert nu["n"] == pytest.approx(best.x, abs=1e-8) and d == pytest.approx(-2 * best.fun, rel=1e-9)


def test_tight_constraint_gives_the_fit_without_nuisances():
    # sigma_nu -> 0 pins nu at A = 0: Delta -> 0 and tau -> t of the full minimiser
    rng = np.random.default_rng(2)
    ref, data = rng.exponential(size=(4000, 1)), rng.exponential(size=(220, 1))
    kw = dict(M=20, sigma=0.5, lam=1e-5, center_pool="reference")
    plain = fastnplm.KernelNPLM(solver="newton", hessian="dense", **kw).fit(ref, data, n_expected=200.0)
    res = fastnplm.KernelNPLM(**kw).fit(ref, data, n_expected=200.0, nuisances=[Nuisance("n", 1e-7)])
    assert res.converged and abs(res.delta) < 1e-6 and abs(res.nu_tau["n"]) < 1e-7  # within its width
    assert res.tau == pytest.approx(plain.t, rel=1e-6) and res.t == pytest.approx(plain.t, rel=1e-6)
    np.testing.assert_allclose(res.predict(data[:5]), plain.predict(data[:5]), rtol=1e-5, atol=1e-8)


def test_a_free_normalisation_absorbs_a_yield_excess():
    # data = reference shape with 20% more events: the normalisation nuisance (wide constraint)
    # absorbs it in both tau and Delta, so t is the shape-only test's size (small), while the
    # fit without nuisances sees the excess.
    rng = np.random.default_rng(3)
    ref, data = rng.exponential(size=(20000, 1)), rng.exponential(size=(1200, 1))
    model = fastnplm.KernelNPLM(M=30, sigma=0.5, lam=1e-6, center_pool="reference")
    res = model.fit(ref, data, n_expected=1000.0, nuisances=[Nuisance("norm", 1.0)])
    assert res.nu_delta["norm"] == pytest.approx(np.log(1.2), abs=0.01)
    assert res.delta > 30 and res.t < 25 < model.fit(ref, data, n_expected=1000.0).t


@pytest.mark.parametrize("make, match", [
    (lambda c: Nuisance("a", 0.0), "sigma"),
    (lambda c: Nuisance("a", 0.1, kind="scale"), "unknown nuisance kind"),
    (lambda c: Nuisance("a", 0.1, kind="shape"), "needs coefficients"),
    (lambda c: Nuisance("a", 0.1, central=float("nan")), "finite"),
    (lambda c: learn_coefficients({0.1: np.ones((10, 1)), 0.2: np.ones((10, 1))}), "nu = 0"),
    (lambda c: learn_coefficients({0.0: np.ones((10, 1)), 0.2: np.ones((10, 2))}, order=1), "features"),
    (lambda c: fastnplm.models.delta_statistic(np.ones((10, 1)), np.ones((5, 1)), [Nuisance("a", 0.1)],
                                        auxiliary={"a": float("inf")}), "finite"),
    (lambda c: fastnplm.models.delta_statistic(np.ones((10, 1)), np.ones((5, 1)), [Nuisance("a", 0.1)],
                                        auxiliary={"b": 0.0}), "unknown nuisances"),
])
def test_bad_nuisance_input(coefficients, make, match):
    with pytest.raises(ValueError, match=match):
        make(coefficients)


@pytest.mark.slow
def test_imperfect_machine_1d_toy_validation(coefficients):
    # The 1D toy of D'Agnolo et al. 2022: reference Exp(1) scaled by e^nu_S (shape, learnt
    # coefficients) with yield e^nu_N, N(R) = 2000, N_R = 200000, sigma_S = sigma_N = 0.15.
    # Toys generated at nu* = (+sigma, +sigma) with no signal: t = tau - Delta follows the
    # nu = 0 null (two-sample KS at the 1e-3 level, fixed seeds), while tau alone is shifted.
    # 24 toys each side to stay within the suite's budget (bench/nuisance_1d.py runs more).
    rng = np.random.default_rng(7)
    ref = rng.exponential(size=(200_000, 1))
    nus = [Nuisance("scale", S, "shape", coefficients), Nuisance("norm", S)]

    def generate(rng, n, nu=None):
        return _scaled_exp((nu or {}).get("scale", 0.0), n, rng)

    model = fastnplm.KernelNPLM(M=60, sigma=0.3, lam=1e-6, center_pool="reference")
    kw = dict(toys=24, n_expected=2000.0, nuisances=nus)
    null = fastnplm.calibrate(model, ref, generate, seed=1, **kw)
    shifted = fastnplm.calibrate(model, ref, generate, seed=2, nu_true={"scale": S, "norm": S}, **kw)
    assert null.converged.all() and shifted.converged.all()
    from scipy import stats
    assert stats.ks_2samp(null.t[:, 0], shifted.t[:, 0]).pvalue > 1e-3
    assert stats.ks_2samp(null.details["tau"][:, 0], shifted.details["tau"][:, 0]).pvalue < 1e-3
    # Delta's fitted nuisances follow the truth (auxiliary values drawn around nu*): nu_S and
    # nu_N average near +sigma, within ~3 standard errors of 24 toys (each pull ~sigma wide)
    for name in ("scale", "norm"):
        pulls = [r[0][name] for r in shifted.details["nu_delta"]]
        assert abs(np.mean(pulls) - S) < 3 * S / np.sqrt(24), name


def test_nuisance_toys_are_fits_with_their_own_auxiliary_values(tmp_path):
    # toy k: its events, then its auxiliary values A ~ N(nu*, sigma), from toy_rng(seed, k) only
    rng = np.random.default_rng(4)
    ref, pool = rng.exponential(size=(4000, 1)), rng.exponential(size=(40000, 1))
    model = fastnplm.KernelNPLM(M=20, sigma=0.5, lam=1e-5, center_pool="reference")
    nus = [Nuisance("norm", 0.1)]
    store = tmp_path / "n.fnplm"
    cal = fastnplm.calibrate(model, ref, pool, toys=4, n_expected=200.0, seed=5, nuisances=nus,
                             nu_true={"norm": 0.1}, store=store)
    r = fastnplm.calibration.toy_rng(5, 2)
    data = pool[r.choice(len(pool), r.poisson(200.0 * np.exp(0.1)), replace=False)]
    r.integers(2**63)  # the stream's network-seed draw
    aux = {"norm": r.normal(0.1, 0.1)}
    one = model.fit(ref, data, n_expected=200.0, nuisances=nus, auxiliary=aux)
    assert cal.t[2, 0] == pytest.approx(one.t, rel=1e-12) and cal.details["tau"][2, 0] == pytest.approx(one.tau)
    assert cal.details["auxiliary"][2] == pytest.approx(aux)
    back = fastnplm.load_calibration(store)
    assert np.array_equal(back.t, cal.t) and np.array_equal(back.details["delta"], cal.details["delta"])
    with pytest.raises(ValueError, match="nu_true must give"):
        fastnplm.calibrate(model, ref, pool, toys=2, n_expected=200.0, nuisances=nus, nu_true={"x": 1.0})
    with pytest.raises(ValueError, match="callable"):
        fastnplm.calibrate(model, ref, pool, toys=2, n_expected=200.0, nu_true={"s": 0.1},
                           nuisances=[Nuisance("s", 0.1, "shape", fastnplm.models.ShapeCoefficients(ref[:3], 1.0, np.zeros(3)))])


def test_neural_tau_with_a_tight_constraint_is_the_plain_loss():
    # nu pinned at 0 by a tight constraint: tau is -2 x the plain NPLM loss of the fitted
    # network (the core's loss, an independent computation), and Delta vanishes. (The network's
    # optimum itself is one of several local optima: L-BFGS-B paths that differ in rounding can
    # end in different ones, so the fit is not compared with a separate plain fit.)
    rng = np.random.default_rng(6)
    ref, data = rng.exponential(size=(4000, 1)), rng.exponential(size=(220, 1))
    model = fastnplm.NeuralNPLM(hidden=(3,), clip=5.0, epochs=400, optimizer="lbfgsb", history_every=0)
    res = model.fit(ref, data, n_expected=200.0, nuisances=[Nuisance("n", 1e-7)])
    assert res.converged and abs(res.delta) < 1e-6 and abs(res.nu_tau["n"]) < 1e-7  # within its width
    nu = res.nu_tau["n"]  # L = L_core(weights w e^nu) + sum_R w (e^nu - 1) - N_D nu + nu^2 / (2 sigma^2)
    w = np.full(4000, 200.0 / 4000)
    loss, _ = fastnplm._core.mlp_loss_grad(ref, w * np.exp(nu), [data], [3], res.fit.params.reshape(1, -1), False, 0)
    expected = -2 * (loss[0] + 200.0 * np.expm1(nu) - 220 * nu + nu**2 / (2 * 1e-14))
    assert res.tau == pytest.approx(expected, rel=1e-9)
    assert res.tau > 0 and np.abs(res.fit.params).max() <= 5.0


def test_neural_free_normalisation_absorbs_a_yield_excess():
    # 20% more events than expected, same shape: Delta takes the excess (nu_N = log 1.2), t does not
    rng = np.random.default_rng(3)
    ref, data = rng.exponential(size=(8000, 1)), rng.exponential(size=(480, 1))
    model = fastnplm.NeuralNPLM(hidden=(3,), clip=5.0, epochs=300, optimizer="lbfgsb", history_every=0)
    res = model.fit(ref, data, n_expected=400.0, nuisances=[Nuisance("norm", 1.0)])
    assert res.nu_delta["norm"] == pytest.approx(np.log(1.2), abs=0.01) and res.converged
    assert res.delta > 10 and res.t < model.fit(ref, data, n_expected=400.0).t - 8
    # neural toys with nuisances go through the same fit
    cal = fastnplm.calibrate(model, ref, rng.exponential(size=(8000, 1)), toys=2, n_expected=400.0, seed=1,
                             nuisances=[Nuisance("norm", 1.0)])
    assert cal.details["delta"].shape == (2, 1) and np.isfinite(cal.t).all()
