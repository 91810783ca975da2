"""fastnplm.baselines: each statistic against a hand computation or the reference library,
the derived M-steps against direct numerical maximisation, null calibration, bad input."""
import contextlib
import io
import math
import warnings

import numpy as np
import pytest
from scipy import integrate, optimize, stats

import fastnplm
from fastnplm import baselines as bl
from fastnplm.baselines import gmm as gmm_mod
from fastnplm.baselines._common import prepared


class _nowarn:
    def __enter__(self):
        self._c = warnings.catch_warnings()
        self._c.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *a):
        self._c.__exit__(*a)

pytest.importorskip("sklearn")


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # the GP fits are many 10x10..40x40 solves: BLAS threads only add hand-offs (2.5x slower on a busy machine)
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        yield


# -- classical tests -----------------------------------------------------------------------------

@pytest.mark.parametrize("n_ref,n_dat,shift", [(3000, 400, 0.0), (5000, 1200, 0.15)])
def test_ks_matches_scipy_unweighted(n_ref, n_dat, shift):
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(n_ref, 3))
    data = rng.normal(size=(n_dat, 3)) + [shift, 0.0, -shift]
    out = bl.KolmogorovSmirnov().per_feature(ref, data)
    for c in range(3):
        sc = stats.ks_2samp(ref[:, c], data[:, c], method="asymp")
        assert out["statistic"][c] == pytest.approx(sc.statistic, abs=1e-14)
        assert out["p"][c] == pytest.approx(sc.pvalue, rel=1e-10, abs=1e-300)


def test_ks_integer_weights_equal_the_expanded_reference():
    # a reference event of weight 2 counts as two events in the weighted ECDF
    rng = np.random.default_rng(2)
    ref = rng.exponential(size=(800, 1))
    data = rng.exponential(size=(300, 1)) * 1.1
    w = rng.integers(1, 4, size=800).astype(float)
    expanded = np.repeat(ref[:, 0], w.astype(int))
    d = bl.KolmogorovSmirnov().per_feature(ref, data, w)["statistic"][0]
    assert d == pytest.approx(stats.ks_2samp(expanded, data[:, 0]).statistic, abs=1e-14)
    # equal weights of any size: the unweighted test
    a = bl.AndersonDarling().per_feature(ref, data, np.full(800, 2.5))
    b = bl.AndersonDarling().per_feature(ref, data)
    assert a["statistic"][0] == pytest.approx(b["statistic"][0], rel=1e-12)


def _scholz_stephens_sigma2(n, k=2):
    """Variance of A2kN under the null (Scholz & Stephens 1987, eq. 4), to undo scipy's standardisation."""
    big_n = float(sum(n))
    h_cap = sum(1.0 / x for x in n)
    hs = np.cumsum(1.0 / np.arange(big_n - 1, 1, -1))
    h = hs[-1] + 1
    g = (hs / np.arange(2, big_n)).sum()
    a = (4 * g - 6) * (k - 1) + (10 - 6 * g) * h_cap
    b = (2 * g - 4) * k**2 + 8 * h * k + (2 * g - 14 * h - 4) * h_cap - 8 * h + 4 * g - 6
    c = (6 * h + 2 * g - 2) * k**2 + (4 * h - 4 * g + 6) * k + (2 * h - 6) * h_cap + 4 * h
    d = (2 * h + 6) * k**2 - 4 * h * k
    return (a * big_n**3 + b * big_n**2 + c * big_n + d) / ((big_n - 1) * (big_n - 2) * (big_n - 3))


@pytest.mark.parametrize("shift", [0.0, 0.2])
def test_ad_matches_scipy_unweighted(shift):
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(2000, 2))
    data = rng.normal(size=(500, 2)) + shift
    out = bl.AndersonDarling().per_feature(ref, data)
    for c in range(2):
        with _nowarn():  # scipy warns that its interpolated p-value is capped; the statistic is what we compare
            sc = stats.anderson_ksamp([ref[:, c], data[:, c]], variant="right")
        a2 = sc.statistic * math.sqrt(_scholz_stephens_sigma2([2000, 500])) + 1.0
        assert out["statistic"][c] == pytest.approx(a2, rel=1e-10)




def test_ad_asymptotic_sf_matches_imhof_inversion():
    # the limiting A^2 is sum_j chi2_1 / (j (j + 1)); its tail by Gil-Pelaez inversion
    lam = 1.0 / (np.arange(1, 20001) * np.arange(2, 20002.0))

    def sf(x):
        def f(u):
            th = 0.5 * np.arctan(lam * u).sum() - 0.5 * x * u
            return math.sin(th) / (u * np.prod((1 + (lam * u) ** 2) ** 0.25))
        return 0.5 + integrate.quad(f, 0, np.inf, limit=500)[0] / math.pi

    for x in (0.6, 1.248, 2.492, 3.857, 6.0):
        # the terms beyond j = 20000 add (almost surely, to O(1e-7)) their mean 1/20001
        assert bl.ad_asymptotic_sf(x) == pytest.approx(sf(x - 1 / 20001), abs=1e-5)


def test_binned_chi2_by_hand():
    ref = np.arange(100, dtype=float).reshape(-1, 1)       # quartile edges at 24, 49, 74
    data = np.array([[1.0], [2.0], [30.0], [80.0], [81.0], [99.0], [500.0]])
    w = np.full(100, 0.1)                                   # N(R) = 10: 2.5 expected per bin
    out = bl.BinnedChi2(bins=4).per_feature(ref, data, w)
    counts, e = np.array([2, 1, 0, 4]), 2.5
    chi2 = float(((counts - e) ** 2 / e).sum())
    assert out["statistic"][0] == pytest.approx(chi2, rel=1e-12)
    assert out["p"][0] == pytest.approx(stats.chi2.sf(chi2, 4), rel=1e-10)


def test_combinations():
    p = [0.2, 0.01, 0.5]
    assert bl.combine(p, "bonferroni") == pytest.approx(-math.log(0.03))
    assert bl.combine(p, "fisher") == pytest.approx(-2 * sum(math.log(x) for x in p))
    assert bl.combine([0.6, 0.9], "bonferroni") == 0.0  # d * min p capped at 1


# -- BumpHunter ----------------------------------------------------------------------------------

def _poisson_tail(d, b):
    return 1.0 - sum(math.exp(-b) * b**k / math.factorial(k) for k in range(int(d)))


def test_window_pvalues_equal_a_direct_poisson_sum():
    b = np.array([4.0, 3.5, 2.0, 1.2, 0.7])
    d = np.array([6, 2, 5, 1, 3])
    for width in (1, 2, 3):
        p, dw, bw = bl.window_pvalues(d, b, width)
        for j in range(b.size - width + 1):
            ds, bs = d[j:j + width].sum(), b[j:j + width].sum()
            want = _poisson_tail(ds, bs) if ds > bs else 1.0
            assert p[j] == pytest.approx(want, rel=1e-10, abs=1e-15)


def test_scan_finds_the_brute_force_best_window():
    rng = np.random.default_rng(4)
    for _ in range(20):
        b = rng.uniform(0.5, 10, size=12)
        d = rng.poisson(b * rng.uniform(0.5, 2.0, size=12))
        res = bl.scan(d, b, width_min=2, width_max=5)
        best = min((_poisson_tail(d[i:i + w].sum(), b[i:i + w].sum()) if d[i:i + w].sum() > b[i:i + w].sum() else 1.0,
                    i, w) for w in range(2, 6) for i in range(12 - w + 1))
        assert res.min_p == pytest.approx(best[0], rel=1e-9)
        assert res.t == pytest.approx(-math.log(best[0]), rel=1e-9)
        if best[0] < 1:
            assert (res.lo, res.hi) == (best[1], best[1] + best[2])


def test_bumphunter_matches_pybumphunter():
    pbh = pytest.importorskip("pyBumpHunter")
    rng = np.random.default_rng(5)
    ref = rng.exponential(size=(50_000, 1))
    data = np.concatenate([rng.exponential(size=(1000, 1)), rng.normal(2.5, 0.1, size=(25, 1))])
    w = np.full(ref.shape[0], 1000 / ref.shape[0])
    ours = bl.BumpHunter(bins=30, range=(0, 6), width_min=1, width_max=8)
    b = ours.expected(ref, w)
    counts = np.histogram(data[:, 0], bins=ours.edges(ref))[0]
    theirs = pbh.BumpHunter1D(rang=(0, 6), width_min=1, width_max=8, npe=50, bins=30, nworker=1, seed=11)
    with _nowarn():
        with contextlib.redirect_stdout(io.StringIO()):  # pyBumpHunter prints its progress
            theirs.bump_scan(counts, b, is_hist=True, do_pseudo=True)
    mine = ours.scan(ref, data, w)
    for i, width in enumerate(range(1, 9)):
        np.testing.assert_allclose(mine.p_windows[width], theirs.res_ar[i], rtol=1e-12, atol=0)
    assert mine.min_p == pytest.approx(theirs.min_Pval_ar[0], rel=1e-12)
    assert (mine.lo, mine.hi - mine.lo) == (theirs.min_loc_ar[0], theirs.min_width_ar[0])
    # its pseudo-experiments (np.random.seed(seed), Poisson in every bin) through our scan
    np.random.seed(11)  # noqa: NPY002 (pyBumpHunter's own legacy generator, reproduced)
    pseudo = np.random.poisson(lam=b[:, None], size=(b.size, 50))  # noqa: NPY002
    t_ours = np.array([bl.scan(pseudo[:, k], b, 1, 8).t for k in range(50)])
    np.testing.assert_allclose(t_ours, theirs.t_ar[1:], rtol=1e-12)
    assert np.count_nonzero(t_ours >= mine.t) / 50 == pytest.approx(theirs.global_Pval)


# -- Gaussian mixture with a frozen background -----------------------------------------------------

def _planted(n=4000, lam=0.1, mu_a=(2.0, -1.0), sd_a=0.3, seed=6):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(40_000, 2))
    n_a = int(round(lam * n))
    data = np.concatenate([rng.normal(size=(n - n_a, 2)), rng.normal(mu_a, sd_a, size=(n_a, 2))])
    return ref, data


def test_gmm_recovers_a_planted_anomaly():
    lam, n, sd_a = 0.1, 4000, 0.3
    ref, data = _planted(n, lam, sd_a=sd_a)
    fit = bl.FixedBackgroundGMM(n_background=1, n_anomaly=1, seed=0).fit(ref, data)
    # binomial error of the fraction, sd_a / sqrt(n lam) of the mean; 4 sigma (overlap inflates a little)
    assert abs(fit.lam - lam) < 4 * math.sqrt(lam * (1 - lam) / n)
    np.testing.assert_allclose(fit.means[0], [2.0, -1.0], atol=4 * sd_a / math.sqrt(lam * n))
    assert fit.t > 100 and fit.converged
    prob = fit.anomaly_probability
    assert prob[-int(lam * n):].mean() > 0.8 and prob[:-int(lam * n)].mean() < 0.05


def test_gmm_em_never_decreases_the_objective():
    ref, data = _planted(1500, 0.05)
    for penalty, gamma in ((None, 0.0), ("l1", 3.0), ("l2", 3.0)):
        m = bl.FixedBackgroundGMM(n_background=1, penalty=penalty, gamma=gamma)
        bg = m.fit_background(ref)
        log_fb = bg.gm.score_samples(data)
        floor = m.min_scale * bg.std
        objs = []
        for it in range(1, 15):
            m.max_iter = it
            out = m._em(data, log_fb, bg, floor, 0.02, np.ones(1), data[:1].copy() + 0.5,
                        np.eye(2)[None] * 0.2)
            objs.append(out[0])
        assert np.all(np.diff(objs) >= -1e-9 * abs(objs[0]))


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_penalised_mean_step_is_the_maximiser(penalty):
    # the M-step for one anomaly mean against direct numerical maximisation of the same objective
    rng = np.random.default_rng(7)
    m = bl.FixedBackgroundGMM(penalty=penalty, gamma=4.0)
    bg = gmm_mod._Background(None, np.array([0.1, -0.2, 0.0]), np.array([1.0, 2.0, 0.5]))
    a = rng.normal(size=(3, 3))
    cov = a @ a.T + 0.5 * np.eye(3)
    prec = np.linalg.inv(cov)
    rj, xbar = 12.0, np.array([1.5, -0.1, 0.05])
    got = m._means_step(rj, xbar, cov, xbar.copy(), bg)

    def neg_q(mu):
        dz = (mu - bg.mean) / bg.std
        pen = np.abs(dz).sum() if penalty == "l1" else 0.5 * (dz * dz).sum()
        return 0.5 * rj * (mu - xbar) @ prec @ (mu - xbar) + m.gamma * pen
    ref = optimize.minimize(neg_q, xbar, method="Powell", options={"xtol": 1e-12, "ftol": 1e-14, "maxiter": 20000}).x
    assert neg_q(got) <= neg_q(ref) + 1e-9
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_l1_penalty_selects_the_informative_variable():
    rng = np.random.default_rng(8)
    ref = rng.normal(size=(40_000, 3))
    data = np.concatenate([rng.normal(size=(1800, 3)), rng.normal([2.5, 0, 0], [0.3, 1, 1], size=(200, 3))])
    # soft threshold gamma / (s_v R P_vv): 50 / 200 = 0.25 on x2, x3 (unit variance), 3.5 times the
    # noise 1/sqrt(200) of their anomaly-weighted means; 0.02 on x1 (variance 0.09), far below its 2.5 shift
    fit = bl.FixedBackgroundGMM(n_background=1, penalty="l1", gamma=50.0, seed=0).fit(ref, data)
    assert fit.selected.tolist() == [True, False, False]
    assert abs(fit.means[0, 0] - 2.5) < 0.2


def test_floored_covariance_is_the_constrained_maximiser():
    s = np.array([[1.0, 0.3], [0.3, 0.0004]])
    scale = np.array([0.1, 0.1])
    out = gmm_mod._floored(s, scale)
    assert np.linalg.eigvalsh(out - np.diag(scale**2)).min() >= -1e-14
    big = np.array([[1.0, 0.2], [0.2, 0.5]])
    np.testing.assert_allclose(gmm_mod._floored(big, scale), big, atol=1e-14)


# -- Gaussian-process resonance search -------------------------------------------------------------

def test_signal_kernel_equals_the_formula_and_is_psd():
    x = np.linspace(0.02, 0.98, 30)[:, None]
    a, l, m, t = 3.0, 0.07, 0.4, 0.1
    k = bl.signal_kernel(amplitude=a, length_scale=l, location=m, width=t)(x)
    xi, xj = x, x.T
    want = a * np.exp(-(xi - xj) ** 2 / (2 * l * l)) * np.exp(-((xi - m) ** 2 + (xj - m) ** 2) / (2 * t * t))
    np.testing.assert_allclose(k, want, rtol=1e-14, atol=0)
    assert np.linalg.eigvalsh(k).min() > -1e-12 * np.abs(k).max()
    kb = bl.falling_kernel(amplitude=100.0, decay=0.3, length_scale=0.1, length_slope=0.5)(x)
    assert np.linalg.eigvalsh(kb).min() > -1e-10 * np.abs(kb).max()


def test_signal_kernel_gradient_matches_finite_differences():
    x = np.linspace(0.02, 0.98, 12)[:, None]
    ker = bl.signal_kernel(amplitude=2.0, length_scale=0.07, location=0.45, width=0.12)
    _, grad = ker(x, eval_gradient=True)
    for i in range(ker.theta.size):
        up, dn = ker.theta.copy(), ker.theta.copy()
        up[i] += 1e-6
        dn[i] -= 1e-6
        fd = (ker.clone_with_theta(up)(x) - ker.clone_with_theta(dn)(x)) / 2e-6
        np.testing.assert_allclose(grad[:, :, i], fd, rtol=1e-6, atol=1e-9)


def test_gp_recovers_an_injected_resonance():
    rng = np.random.default_rng(9)
    ref = rng.exponential(size=(100_000, 1))
    data = np.concatenate([rng.exponential(size=(2000, 1)), rng.normal(3.0, 0.2, size=(80, 1))])
    gp = bl.GPResonanceSearch(bins=40, range=(0, 8))
    fit = gp.fit(ref, data, np.full(ref.shape[0], 2000 / ref.shape[0]))
    bin_width = 0.2
    assert abs(fit.location - 3.0) < 2 * bin_width
    assert fit.t > 9 and fit.strength > 0


# -- calibration and comparison ----------------------------------------------------------------------

def test_toys_are_the_calibrate_toys():
    rng = np.random.default_rng(10)
    ref, pool = rng.exponential(size=(5000, 1)), rng.exponential(size=(20000, 1))
    model = fastnplm.KernelNPLM(M=50, sigma=0.5, lam=1e-5, center_pool="reference")
    cal = fastnplm.calibrate(model, ref, pool, toys=5, n_expected=300, seed=3, progress=False)

    class Size:
        def statistic(self, reference, data, reference_weights=None):
            return float(data.shape[0])
    null = bl.calibrate_method(Size(), ref, pool, toys=5, n_expected=300, seed=3)
    np.testing.assert_array_equal(null.n_events, cal.n_events)
    np.testing.assert_array_equal(null.t, cal.n_events)


def test_clopper_pearson_matches_scipy():
    for k, n in ((0, 20), (3, 20), (20, 20), (57, 100)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.6827, method="exact")
        assert bl.clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_compare_runs_named_and_custom_methods():
    rng = np.random.default_rng(11)
    ref, pool = rng.exponential(size=(20_000, 1)), rng.exponential(size=(60_000, 1))

    class Mean:
        name = "mean"

        def statistic(self, reference, data, reference_weights=None):
            return float(np.mean(data))
    res = fastnplm.compare(ref, pool, {"far": lambda g: g.normal(5.0, 0.1, size=(60, 1))},
                           methods=["ks", "bumphunter", Mean()], toys=60, signal_toys=20, n_expected=500, seed=2,
                           options={"bumphunter": {"range": (0, 8), "bins": 32}}, data=pool[:500])
    assert list(res.methods) == ["ks", "bumphunter", "mean"]
    for r in res.methods.values():
        assert r.null.toys == 60 and r.signal_t["far"].size == 20
        assert r.observed["p"] > 0
    # 60 events at 5.0 over ~1.4 expected: every signal toy beyond every null toy for BumpHunter
    assert res.methods["bumphunter"].power["far"]["Z=2"]["power"] == 1.0
    assert res.methods["bumphunter"].power["far"]["Z=3"]["power"] == 0.0   # 60 toys cannot reach p = 1.35e-3
    # the same null toys for every method: the custom statistic equals the mean of toy k
    want = [float(np.mean(bl.draw_toy(ref, pool, 500, 2, k))) for k in range(3)]
    np.testing.assert_allclose(res.methods["mean"].null.t[:3], want)
    assert "| far |" in res.markdown()


# -- the null: p-values uniform ------------------------------------------------------------------------

def _null_case(method, n_exp, d=1, toys=150, fresh=100):
    rng = np.random.default_rng(12)
    if d == 1:
        gen = lambda g, n: g.exponential(size=(n, 1))  # noqa: E731
    else:
        cov = 0.5 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
        gen = lambda g, n: g.multivariate_normal(np.zeros(d), cov, size=n)  # noqa: E731
    ref, pool = gen(rng, 30_000), gen(rng, 60_000)
    null = bl.calibrate_method(method, ref, pool, toys=toys, n_expected=n_exp, seed=1)
    stat = prepared(method, ref, np.full(ref.shape[0], n_exp / ref.shape[0]))
    g = np.random.default_rng(99)  # independent null data sets, generated afresh
    t_fresh = np.array([stat(gen(g, int(g.poisson(n_exp)))) for _ in range(fresh)])
    p = null.p_values(t_fresh)
    # p uniform <=> the fresh statistics and the toys share one distribution: the two-sample KS
    # test says it without neglecting the toys' own sampling error (conservative for ties). At
    # level 0.001 per method (about 0.6% for the six together) it flags a CDF difference of about
    # 1.95 sqrt(1/toys + 1/fresh), 0.2 for 200 + 200.
    return p, stats.ks_2samp(null.t, t_fresh).pvalue


@pytest.mark.slow
@pytest.mark.parametrize("name,method,d", [
    ("ks", bl.KolmogorovSmirnov(), 1), ("ad-fisher", bl.AndersonDarling(combine="fisher"), 3),
    ("chi2", bl.BinnedChi2(bins=10), 3), ("bumphunter", bl.BumpHunter(bins=24, range=(0, 6)), 1)])
def test_null_pvalues_uniform_cheap(name, method, d):
    p, ks_p = _null_case(method, 400, d=d, toys=200, fresh=200)
    assert ks_p > 0.001, name
    assert abs(p.mean() - 0.5) < 4 * math.sqrt(1 / 12 / 200 + 1 / 12 / 200)  # mean of U(0,1): 1/2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gmm", "gp"])
def test_null_pvalues_uniform_fitted(name):
    method = (bl.FixedBackgroundGMM(n_background=4, n_init=2) if name == "gmm"
              else bl.GPResonanceSearch(bins=12, range=(0, 5)))
    n = 100 if name == "gmm" else 80
    p, ks_p = _null_case(method, 300, toys=n, fresh=n)
    assert ks_p > 0.001, name


# -- bad input -----------------------------------------------------------------------------------------

def test_bad_input_is_refused_clearly():
    ref = np.random.default_rng(0).normal(size=(100, 2))
    with pytest.raises(ValueError, match="combine"):
        bl.KolmogorovSmirnov(combine="mean")
    with pytest.raises(ValueError, match="NaN"):
        bl.KolmogorovSmirnov().statistic(ref, np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="features"):
        bl.AndersonDarling().statistic(ref, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="width_min"):
        bl.BumpHunter(bins=10, width_min=6, width_max=3)
    with pytest.raises(ValueError, match="width_max"):
        bl.BumpHunter(bins=10, width_max=11)
    with pytest.raises(ValueError, match="bins"):
        bl.BumpHunter(bins=[0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="out of range"):
        bl.BumpHunter(feature=4).statistic(ref, ref[:10])
    with pytest.raises(ValueError, match="penalty"):
        bl.FixedBackgroundGMM(penalty="l3")
    with pytest.raises(ValueError, match="bins"):
        bl.GPResonanceSearch(bins=3)
    with pytest.raises(ValueError, match="same non-zero length"):
        bl.scan([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="reference_weights"):
        bl.BinnedChi2().statistic(ref, ref[:10], np.ones(99))
    pool = np.zeros((500, 1))
    with pytest.raises(ValueError, match="unknown method 'bumpfinder'"):
        fastnplm.compare(ref, ref, methods=["bumpfinder"], n_expected=10)
    with pytest.raises(TypeError, match="statistic"):
        fastnplm.compare(ref, ref, methods=[object()], n_expected=10)
    with pytest.raises(ValueError, match="n_expected"):
        fastnplm.compare(ref, ref, methods=["ks"])
    with pytest.raises(ValueError, match="pool has 1 features but the reference has 2"):
        fastnplm.compare(ref, pool, methods=["ks"], n_expected=10)
    with pytest.raises(TypeError, match="signal_sampler"):
        fastnplm.compare(ref, ref, signal_sampler=3, methods=["ks"], n_expected=10)
    with pytest.raises(ValueError, match="equal reference weights"):
        fastnplm.compare(ref, ref, methods=["nplm"], n_expected=10, reference_weights=np.arange(1, 101.0))
