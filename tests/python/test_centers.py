"""Center policies: what each draws, the D^2 law of the coverage policy, and the defaults."""
import numpy as np
import pytest
from scipy import stats

import fastnplm
from fastnplm.models.kernel import DEFAULT_CENTER_POOL, coverage_center_indices, reference_center_indices


@pytest.fixture(scope="module")
def exp_reference():
    return np.random.default_rng(0).exponential(size=(200_000, 1))


def test_coverage_draws_distinct_reference_events_half_of_them_uniformly(exp_reference):
    idx = coverage_center_indices(exp_reference, 301, seed=4)
    assert idx.shape == (301,) and np.all(np.diff(idx) > 0)  # sorted, no event twice
    assert np.array_equal(idx, coverage_center_indices(exp_reference, 301, seed=4))  # a function of the seed
    assert not np.array_equal(idx, coverage_center_indices(exp_reference, 301, seed=5))
    uniform_half = reference_center_indices(exp_reference.shape[0], 151, 4)
    assert np.isin(uniform_half, idx).all()


def test_coverage_puts_centers_in_the_tail_whatever_the_seed(exp_reference):
    # Exp(1): a uniform draw of 200 centers puts 200 e^-5 = 1.3 of them beyond x = 5 on average
    # (none in 26% of seeds); the D^2 half spreads over the support up to x ~ 10
    for seed in range(8):
        cov = exp_reference[coverage_center_indices(exp_reference, 200, seed), 0]
        assert np.count_nonzero(cov > 5) >= 10, seed
        assert np.count_nonzero(cov < 1) >= 0.5 * 100 * (1 - np.exp(-1))  # the bulk keeps its uniform half
    uni = [np.count_nonzero(exp_reference[reference_center_indices(200_000, 200, s), 0] > 5) for s in range(8)]
    assert np.mean(uni) < 4


def test_d2_step_follows_the_squared_distance_law():
    # five events, M = 2: one uniform center, then one drawn with probability d^2 / sum d^2
    x = np.array([[0.0], [1.0], [3.0], [3.5], [7.0]])
    counts = np.zeros((5, 5))
    for seed in range(6000):
        first = reference_center_indices(5, 1, seed)[0]
        second = [i for i in coverage_center_indices(x, 2, seed) if i != first]
        counts[first, second[0]] += 1
    for first in range(5):
        d2 = (x[:, 0] - x[first, 0]) ** 2
        expected = counts[first].sum() * d2 / d2.sum()
        keep = expected > 0
        assert counts[first, ~keep].sum() == 0  # never the same event twice
        chi2 = ((counts[first, keep] - expected[keep]) ** 2 / expected[keep]).sum()
        assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3, (first, counts[first], expected)


def test_reference_policies_ignore_the_data(exp_reference):
    ref = exp_reference[:5000]
    rng = np.random.default_rng(1)
    for policy in ("coverage", "uniform", "reference"):
        a = fastnplm.KernelNPLM(M=40, sigma=0.5, center_pool=policy, seed=3).fit(ref, rng.exponential(size=(300, 1)))
        b = fastnplm.KernelNPLM(M=40, sigma=0.5, center_pool=policy, seed=3).fit(ref, rng.exponential(size=(90, 1)))
        assert np.array_equal(a.centers, b.centers) and np.isin(a.centers, ref).all()
    np.testing.assert_array_equal(  # "reference" is the old name of "uniform"
        fastnplm.KernelNPLM(M=40, sigma=0.5, center_pool="reference", seed=3).fit(ref, ref[:50]).centers,
        fastnplm.KernelNPLM(M=40, sigma=0.5, center_pool="uniform", seed=3).fit(ref, ref[:50]).centers)


def test_default_model_calibrates_on_the_shared_path(exp_reference):
    model = fastnplm.KernelNPLM(M=100, sigma=0.3, lam=1e-6)
    assert model.center_pool == DEFAULT_CENTER_POOL == "uniform" and model.shared_centers
    pool = np.random.default_rng(2).exponential(size=(50_000, 1))
    cal = fastnplm.calibrate(model, exp_reference[:20_000], pool, toys=20, n_expected=200, seed=1)
    assert cal.settings["path"] == "spectral" and cal.model().hessian == "spectral"
    assert not fastnplm.KernelNPLM(center_pool="pooled").shared_centers


def test_every_command_has_the_same_center_default():
    from fastnplm.ui.cli import build_parser
    p = build_parser()
    args = {"calibrate": ["--reference", "R", "--pool", "P", "--n-expected", "1"],
            "report": ["--reference", "R", "--data", "D"], "fit": ["--reference", "R", "--data", "D"], "demo": []}
    for cmd, rest in args.items():
        assert p.parse_args([cmd, *rest]).center_pool == DEFAULT_CENTER_POOL, cmd
