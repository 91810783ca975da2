"""fastnplm.Monitor: the shared-reference test of a batch equals the calibration model's fit."""
import numpy as np
import pytest
from scipy import stats

import fastnplm


@pytest.mark.parametrize("center_pool", ["coverage", "uniform", "pooled"])
def test_monitor_equals_the_calibrated_fit(center_pool):
    rng = np.random.default_rng(2)
    ref, pool = rng.normal(size=(5000, 3)), rng.normal(size=(20000, 3))
    model = fastnplm.KernelNPLM(M=40, sigma=1.5, lam=1e-6, center_pool=center_pool, seed=3, threads=1)
    cal = fastnplm.calibrate(model, ref, pool, toys=20, n_expected=300, seed=4, progress=False)
    mon = fastnplm.Monitor(cal, ref)
    assert (mon.shared is not None) == (cal.settings["path"] == "spectral")
    for k in range(3):
        batch = rng.normal(size=(rng.poisson(300), 3)) * (1.0 + 0.3 * k)
        expected = cal.model().fit(ref, batch, n_expected=300)
        got = mon.fit(batch)
        assert got.t == pytest.approx(expected.t, rel=1e-12)
        np.testing.assert_allclose(got.f_reference, expected.f_reference, rtol=1e-12, atol=1e-14)
        out = mon.test(batch)
        assert out["t"] == got.t  # the lean test path computes the fit's t
        p = (1 + np.count_nonzero(cal.t[:, 0] >= expected.t)) / 21
        assert out["p"] == pytest.approx(p) and out["z"] == pytest.approx(stats.norm.isf(p))
        assert out["n_events"] == len(batch) and out["seconds"] > 0
    with pytest.raises(ValueError, match="batch has 2 features but the reference has 3"):
        mon.test(np.ones((10, 2)))
