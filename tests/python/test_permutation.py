"""fastnplm.permutation_test: two samples, calibrated by relabelling their pooled events.

Truths: the refit of every permutation (fastnplm's own fit with a tight CG tolerance), the
exact Newton step solved in long double (oracle.py), and the distribution of permutation
p-values under the null (uniform on {1/(B+1), ..., 1})."""
import json

import numpy as np
import pytest
from scipy import stats

import fastnplm
import oracle
from fastnplm.calibration.permutation import permutation_test
from fastnplm.models._kernel_defs import PC_EPSILON


@pytest.fixture(scope="module")
def two():
    rng = np.random.default_rng(5)
    return rng.normal(size=(1500, 2)), rng.normal(size=(400, 2))


def model(**kw):
    return fastnplm.KernelNPLM(**{"M": 30, "sigma": 0.5, "lam": 1e-5, "cg_tol": 1e-12, **kw})


def test_fast_path_equals_the_refit_of_every_permutation(two):
    a, b = two
    fast = permutation_test(model(), a, b, permutations=12, seed=2, sigmas=[0.3, 0.5], fast=True)
    refit = permutation_test(model(), a, b, permutations=12, seed=2, sigmas=[0.3, 0.5], fast=False)
    assert fast.path == "fast" and refit.path == "refit"
    # the fast path solves the step exactly, the fit stops CG at cg_tol = 1e-12: well conditioned
    # here (M = 30 centers), the two agree to the CG tolerance times the problem's scale
    np.testing.assert_allclose(fast.t_obs, refit.t_obs, rtol=1e-8)
    np.testing.assert_allclose(fast.null.t, refit.null.t, rtol=1e-8)
    assert fast.null.t.shape == (12, 2) and np.all(fast.null.t > 0)


def test_weighted_sample_a_fast_equals_refit(two):
    a, b = two
    w = np.random.default_rng(1).uniform(0.5, 1.5, size=a.shape[0])
    fast = permutation_test(model(), a, b, permutations=6, seed=4, weights_a=w, fast=True)
    refit = permutation_test(model(), a, b, permutations=6, seed=4, weights_a=w, fast=False)
    np.testing.assert_allclose(fast.null.t, refit.null.t, rtol=1e-8)
    np.testing.assert_allclose(fast.t_obs, refit.t_obs, rtol=1e-8)


def test_fast_path_meets_the_long_double_step_where_k_mm_is_ill_conditioned(two):
    # sigma = 2 in 2-D with 100 centers: K_MM is singular to working precision and the core's
    # penalty lam alpha^T (K_MM + eps M I) alpha carries its jitter; the exact step in the
    # eigenbasis of K_MM meets the same step solved in long double
    a, b = two
    pooled = np.concatenate([a, b])
    centers = pooled[np.sort(np.random.default_rng(0).choice(pooled.shape[0], 100, replace=False))]
    res = permutation_test(model(sigma=2.0, centers=centers), a, b, permutations=1, fast=True)
    truth = float(oracle.first_step_t_longdouble(a, b, centers, 2.0, 1e-5, jitter=PC_EPSILON))
    assert res.t_obs[0] == pytest.approx(truth, rel=1e-6)


def test_result_does_not_depend_on_the_batch(two):
    a, b = two
    one = permutation_test(model(), a, b, permutations=7, seed=9, batch=1)
    three = permutation_test(model(), a, b, permutations=7, seed=9, batch=3)
    np.testing.assert_array_equal(one.null.t, three.null.t)


def test_p_value_counts_the_permutations(two):
    a, b = two
    res = permutation_test(model(), a, b, permutations=30, seed=1)
    t = res.null.t[:, 0]
    k = int(np.count_nonzero(t >= res.t_obs[0]))
    p = res.p_value()
    assert p["p"] == (1 + k) / 31 and p["exceeded"] == k
    lo, hi = p["interval"]
    assert lo <= k / 30 <= hi
    assert res.z() == pytest.approx(stats.norm.isf(p["p"]))
    summary = res.summary()
    assert summary["per_width"][0]["p"] == p["p"] and summary["permutations"] == 30


@pytest.mark.slow
def test_null_p_values_are_uniform():
    # 200 independent pairs of samples from one distribution, 99 permutations each: P(p <= k/100)
    # = k/100 exactly for a valid permutation test. KS against the uniform (the discreteness adds
    # at most 1/100 to the statistic) and the fraction below 0.05 and 0.2, each within 3 binomial
    # standard deviations.
    rng = np.random.default_rng(2024)
    ps = []
    for _ in range(200):
        a, b = rng.exponential(size=(300, 1)), rng.exponential(size=(80, 1))
        res = permutation_test(fastnplm.KernelNPLM(M=15, sigma=0.5, lam=1e-5), a, b, permutations=99,
                               seed=int(rng.integers(2**31)))
        ps.append(res.p_value()["p"])
    ps = np.array(ps)
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    for level in (0.05, 0.2):
        frac = np.mean(ps <= level)
        assert abs(frac - level) < 3 * np.sqrt(level * (1 - level) / ps.size), (level, frac)


def test_a_shifted_sample_is_found(two):
    a, _ = two
    b = np.random.default_rng(3).normal(loc=[0.6, 0.0], size=(400, 2))
    res = permutation_test(model(), a, b, permutations=49, seed=0)
    assert res.p_value()["exceeded"] == 0 and res.p_value()["p"] == pytest.approx(1 / 50)


def test_several_widths_are_aggregated_on_the_same_permutations(two):
    a, b = two
    res = permutation_test(model(), a, b, permutations=20, seed=6, sigmas=[0.3, 0.6, 1.2])
    agg = res.aggregate()
    direct = fastnplm.aggregate(res.null, res.t_obs)
    assert agg["min-p"] == direct["min-p"] and agg["prod-p"] == direct["prod-p"]
    assert [w["t"] for w in agg["per_width"]] == pytest.approx(res.t_obs.tolist())
    assert "aggregated" in res.summary()


def test_store_resumes_to_the_uninterrupted_result(two, tmp_path):
    a, b = two
    store = tmp_path / "perm.fnplm"
    full = permutation_test(model(), a, b, permutations=10, seed=8)
    permutation_test(model(), a, b, permutations=4, seed=8, store=store)
    lines = store.read_text().splitlines()
    assert json.loads(lines[0])["kind"] == "permutation" and len([x for x in lines[1:] if x]) == 4
    resumed = permutation_test(model(), a, b, permutations=10, seed=8, store=store)
    np.testing.assert_array_equal(resumed.null.t, full.null.t)
    with pytest.raises(ValueError, match="other settings"):
        permutation_test(model(), a, b[:-1], permutations=10, seed=8, store=store)


def test_neural_model_refits(two):
    a, b = two
    res = permutation_test(fastnplm.NeuralNPLM(hidden=(3,), epochs=50), a[:300], b[:100], permutations=3, seed=1)
    assert res.path == "refit" and res.null.t.shape == (3, 1) and res.sigmas == (None,)


def test_bad_input_is_named(two):
    a, b = two
    with pytest.raises(ValueError, match="features"):
        permutation_test(model(), a, b[:, :1], permutations=3)
    with pytest.raises(ValueError, match="permutations"):
        permutation_test(model(), a, b, permutations=0)
    with pytest.raises(TypeError, match="KernelNPLM or NeuralNPLM"):
        permutation_test("kernel", a, b, permutations=3)
    with pytest.raises(ValueError, match="fast=True"):
        permutation_test(model(solver="newton"), a, b, permutations=3, fast=True)
    with pytest.raises(ValueError, match="sample_a"):
        permutation_test(model(), a[:, :1] * np.nan, b[:, :1], permutations=3)


def test_cli_test_with_permutations(two, tmp_path, capsys):
    from fastnplm.ui.cli import main
    a, b = two
    np.save(tmp_path / "A.npy", a)
    np.save(tmp_path / "B.npy", b)
    argv = ["test", "--reference", str(tmp_path / "A.npy"), "--data", str(tmp_path / "B.npy"), "--permutations", "9",
            "--M", "30", "--sigmas", "0.3,0.5", "--lam", "1e-5", "--seed", "2", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    direct = permutation_test(model(cg_tol=None, seed=2), a, b, permutations=9, seed=2, sigmas=[0.3, 0.5])
    assert out["permutations"] == 9 and out["path"] == "fast"
    assert [r["t"] for r in out["per_width"]] == pytest.approx(direct.t_obs.tolist(), rel=1e-12)
    assert out["min-p"]["p"] == pytest.approx(direct.aggregate()["min-p"]["p"])
    assert "permutations at or above the data" in out["verdict"]["text"]
    # neither a store nor permutations: a usage error
    with pytest.raises(SystemExit) as err:
        main(argv[:6])
    assert err.value.code == 2


def test_memory_limit_is_named_before_any_work(two, monkeypatch):
    from fastnplm.calibration import permutation

    a, b = two
    monkeypatch.setattr(permutation, "FAST_MEMORY_LIMIT", 1000)
    need = 2 * (a.shape[0] + b.shape[0]) * 30 * 8
    with pytest.raises(MemoryError, match=f"{need / 2**30:.1f} GiB"):
        permutation_test(model(), a, b, permutations=2, fast=True)
    assert permutation_test(model(), a, b, permutations=2).path == "refit"  # fast=None falls back
