"""fastnplm.ui.plot: the drawn content is recomputed independently with numpy/scipy."""
import numpy as np
import pytest
from scipy import stats

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402

import fastnplm  # noqa: E402
from fastnplm.ui import plot  # noqa: E402
from fastnplm.models.nuisance import NuisanceFitResult  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _steps(ax):
    return [p for p in ax.patches if isinstance(p, StepPatch)]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(4000, 2))
    pool = rng.normal(size=(8000, 2))
    data = np.vstack([rng.normal(size=(380, 2)), rng.normal([1.5, 0.0], 0.2, size=(20, 2))])
    model = fastnplm.KernelNPLM(M=60, sigma=0.8, lam=1e-5, center_pool="reference", seed=0, threads=1)
    cal = fastnplm.calibrate(model, ref, pool, toys=40, n_expected=400, sigmas=[0.5, 1.0], seed=2, progress=False)
    fits = [cal.model(j).fit(ref, data, n_expected=400) for j in range(2)]
    return ref, data, cal, fits


def test_null_distribution_content(problem):
    _, _, cal, fits = problem
    t_obs = fits[0].t
    fig, ax = plt.subplots()
    assert plot.null_distribution(cal, t_obs, sigma_index=0, bins=12, ax=ax) is ax
    heights, edges = np.histogram(cal.t[:, 0], bins=12, density=True)
    (hist,) = _steps(ax)
    np.testing.assert_allclose(hist.get_data().values, heights, rtol=1e-12)
    np.testing.assert_allclose(hist.get_data().edges, edges, rtol=1e-12)
    curve = ax.get_lines()[0]
    dof = cal.chi2_fit(0)["dof"]
    np.testing.assert_allclose(curve.get_ydata(), stats.chi2.pdf(curve.get_xdata(), dof), rtol=1e-12)
    vline = ax.get_lines()[1]
    assert np.allclose(vline.get_xdata(), t_obs)
    k = np.count_nonzero(cal.t[:, 0] >= t_obs)
    p = (1 + k) / (cal.toys + 1)
    assert f"Z {'=' if k else '>'} {stats.norm.isf(p):.2f}" in vline.get_label()
    with pytest.raises(ValueError, match="2 widths: pass sigma_index"):
        plot.null_distribution(cal, t_obs, ax=ax)
    # bare toy values work too
    ax2 = plot.null_distribution(np.array([1.0, 2.0, 3.5, 2.2]), chi2=False, bins=3)
    np.testing.assert_allclose(_steps(ax2)[0].get_data().values,
                               np.histogram([1.0, 2.0, 3.5, 2.2], bins=3, density=True)[0])


def test_aggregated_bars(problem):
    _, _, cal, fits = problem
    res = fastnplm.aggregate(cal, [f.t for f in fits])
    ax = plot.aggregated(res)
    heights = [b.get_height() for b in ax.patches]
    expected = [w["z"] for w in res["per_width"]] + [res[m]["z"] for m in ("min-p", "prod-p", "avg-p", "softmax-t")]
    np.testing.assert_allclose(heights, expected, rtol=1e-12)
    ax = plot.aggregated(res, toys=cal.toys)
    ps = [w["p"] for w in res["per_width"]] + [res[m]["p"] for m in ("min-p", "prod-p", "avg-p", "softmax-t")]
    assert [bool(b.get_hatch()) for b in ax.patches] == [p == 1 / (cal.toys + 1) for p in ps]
    with pytest.raises(TypeError, match="fastnplm.aggregate"):
        plot.aggregated([1, 2])


def test_reconstruction_is_sum_of_weights_times_exp_f(problem):
    ref, data, _, fits = problem
    fit = fits[0]
    axes = plot.reconstruction(ref, data, fit, names=["x", "y"], bins=15)
    assert axes.shape == (2, 2)
    w = np.full(len(ref), 400 / len(ref))
    f = fit.predict(ref)                                   # independent of fit.f_reference
    for i in range(2):
        edges = np.linspace(min(ref[:, i].min(), data[:, i].min()), max(ref[:, i].max(), data[:, i].max()), 16)
        ref_h, rw_h = _steps(axes[0, i])
        np.testing.assert_allclose(ref_h.get_data().values, np.histogram(ref[:, i], edges, weights=w)[0], rtol=1e-12)
        expect_rw = np.array([np.sum(w[m] * np.exp(f[m]))
                              for m in ((ref[:, i] >= a) & ((ref[:, i] < b) if b < edges[-1] else (ref[:, i] <= b))
                                        for a, b in zip(edges[:-1], edges[1:]))])
        np.testing.assert_allclose(rw_h.get_data().values, expect_rw, rtol=1e-9)
        dat_line = axes[0, i].get_lines()[0]
        np.testing.assert_array_equal(dat_line.get_ydata(), np.histogram(data[:, i], edges)[0])
        ratio = _steps(axes[1, i])[0].get_data().values
        np.testing.assert_allclose(ratio, expect_rw / np.histogram(ref[:, i], edges, weights=w)[0], rtol=1e-9)
    # the bump sits at x = 1.5: the reweighted reference rises above the reference there
    edges = _steps(axes[1, 0])[0].get_data().edges
    bump = np.searchsorted(edges, 1.5) - 1
    assert _steps(axes[1, 0])[0].get_data().values[bump] > 1.2
    assert axes[1, 0].get_xlabel() == "x"
    fig, given = plt.subplots(2, 1, squeeze=False)
    assert plot.reconstruction(ref, data, fit, features=[1], axes=given)[0, 0] is given[0, 0]
    with pytest.raises(ValueError, match=r"features \[5\] out of range"):
        plot.reconstruction(ref, data, fit, features=[5])


def test_loss_history_and_pulls():
    rng = np.random.default_rng(0)
    ref, dat = rng.exponential(size=2000), rng.exponential(size=200)
    res = fastnplm.NeuralNPLM(hidden=(3,), epochs=300, history_every=100, seed=1, threads=1).fit(ref, dat)
    ax = plot.loss_history(res)
    line = ax.get_lines()[0]
    np.testing.assert_array_equal(line.get_ydata(), res.loss_history)
    np.testing.assert_array_equal(line.get_xdata(), np.arange(res.loss_history.size) * 100)
    nus = [fastnplm.Nuisance("norm", 0.1), fastnplm.Nuisance("scale", 0.05, "normalization")]
    fake = NuisanceFitResult(tau=10.0, delta=2.0, nu_tau={"norm": 0.15, "scale": -0.02},
                             nu_delta={"norm": 0.05, "scale": 0.01}, auxiliary={"norm": 0.0, "scale": 0.01},
                             converged=True, newton_iterations=4)
    ax = plot.pulls(fake, nus)
    tau_line, delta_line = ax.get_lines()[:2]
    np.testing.assert_allclose(tau_line.get_xdata(), [1.5, -0.6])
    np.testing.assert_allclose(delta_line.get_xdata(), [0.5, 0.0], atol=1e-15)
    with pytest.raises(ValueError, match="no width for nuisance"):
        plot.pulls(fake, nus[:1])


def test_no_global_style_on_import_and_hep_style_needs_mplhep():
    import importlib
    before = dict(mpl.rcParams)
    importlib.reload(plot)
    assert dict(mpl.rcParams) == before
    try:
        import mplhep  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install mplhep"):
            plot.hep_style()
