"""Neural NPLM against independent truth: finite differences, a PyTorch float64 implementation
of the same network, initialisation, Adam and clipping, a numpy forward pass, and the null
distribution of t on the 1D toy."""
import numpy as np
import pytest
from scipy import stats

import fastnplm
from fastnplm import _core

MASK = (1 << 64) - 1


def splitmix64_init(d, hidden, seed, clip):
    """The documented initialisation, written again from its description."""
    state = seed
    params = []
    sizes = (d, *hidden, 1)
    for nin, nout in zip(sizes[:-1], sizes[1:]):
        a = np.sqrt(6.0 / (nin + nout))
        for _ in range(nin * nout):
            state = (state + 0x9E3779B97F4A7C15) & MASK
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            z ^= z >> 31
            params.append(np.clip(a * (2.0 * ((z >> 11) * 2.0**-53) - 1.0), -clip, clip))
        params.extend([0.0] * nout)
    return np.array(params)


def numpy_f(weights, x):
    a = x
    for i in range(0, len(weights) - 2, 2):
        a = 1.0 / (1.0 + np.exp(-(a @ weights[i].T + weights[i + 1])))
    return (a @ weights[-2].T + weights[-1])[:, 0]


def problem(d=1, nr=3000, nd=300, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    ref = rng.exponential(size=(nr, d))
    dat = rng.exponential(size=(nd, d)) + shift
    return ref, dat


@pytest.mark.parametrize("d,hidden,clip,lr", [(1, (4,), 9.0, 1e-2), (3, (5, 3), 0.4, 5e-2)])
def test_adam_matches_pytorch_step_for_step(d, hidden, clip, lr):
    torch = pytest.importorskip("torch")
    ref, dat = problem(d, nr=4001, nd=357, shift=0.3)
    w = np.random.default_rng(5).uniform(0.5, 1.5, size=ref.shape[0]) * dat.shape[0] / ref.shape[0]
    epochs = 100
    model = fastnplm.NeuralNPLM(hidden=hidden, clip=clip, epochs=epochs, lr=lr, seed=123, history_every=1, threads=2)
    p0 = splitmix64_init(d, hidden, 123, clip)
    np.testing.assert_array_equal(model.init_params(d), p0)
    res = model.fit(ref, dat, reference_weights=w)

    # the same training in torch, float64, autograd, torch.optim.Adam and clamp_
    torch.manual_seed(0)
    sizes = (d, *hidden, 1)
    layers = [torch.nn.Linear(i, o, dtype=torch.float64) for i, o in zip(sizes[:-1], sizes[1:])]
    with torch.no_grad():
        off = 0
        for lin, nin, nout in zip(layers, sizes[:-1], sizes[1:]):
            lin.weight.copy_(torch.from_numpy(p0[off:off + nin * nout].reshape(nout, nin)))
            off += nin * nout
            lin.bias.copy_(torch.from_numpy(p0[off:off + nout]))
            off += nout
    params = [p for lin in layers for p in lin.parameters()]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    xr, xd, wr = torch.from_numpy(ref), torch.from_numpy(dat), torch.from_numpy(w)

    def f(x):
        for lin in layers[:-1]:
            x = torch.sigmoid(lin(x))
        return layers[-1](x)[:, 0]

    history = []
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.sum(wr * (torch.exp(f(xr)) - 1)) - torch.sum(f(xd))
        history.append(loss.item())
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p in params:
                p.clamp_(-clip, clip)
    with torch.no_grad():
        final = (torch.sum(wr * (torch.exp(f(xr)) - 1)) - torch.sum(f(xd))).item()
    torch_params = np.concatenate([p.detach().numpy().ravel() for lin in layers for p in (lin.weight, lin.bias)])

    assert res.converged and res.epochs_done == epochs
    assert np.abs(torch_params).max() <= clip
    if clip < 1:
        assert np.isclose(np.abs(torch_params).max(), clip)  # the clip acted
    np.testing.assert_allclose(res.params, torch_params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.loss_history[:epochs], history, rtol=1e-9)
    np.testing.assert_allclose(res.loss, final, rtol=1e-9)
    assert res.t == -2 * res.loss


def test_gradient_matches_finite_differences():
    ref, dat = problem(2, nr=2500, nd=400, shift=0.5)
    w = np.full(ref.shape[0], dat.shape[0] / ref.shape[0])
    hidden = [3, 2]
    p = _core.mlp_init(2, hidden, 7) + np.random.default_rng(1).normal(scale=0.3, size=_core.mlp_n_params(2, hidden))
    loss, grad = _core.mlp_loss_grad(ref, w, [dat], hidden, p[None, :])
    h = 1e-6
    for j in range(p.shape[0]):
        e = np.zeros_like(p)
        e[j] = h
        lp = _core.mlp_loss_grad(ref, w, [dat], hidden, (p + e)[None, :], False)[0][0]
        lm = _core.mlp_loss_grad(ref, w, [dat], hidden, (p - e)[None, :], False)[0][0]
        assert grad[0, j] == pytest.approx((lp - lm) / (2 * h), rel=1e-6, abs=1e-6)


def test_predict_and_weights_match_numpy_forward():
    ref, dat = problem(3, nr=1000, nd=100)
    res = fastnplm.NeuralNPLM(hidden=(5, 4), epochs=20, lr=1e-2).fit(ref, dat)
    x = np.random.default_rng(3).normal(size=(77, 3))
    assert [wt.shape for wt in res.weights] == [(5, 3), (5,), (4, 5), (4,), (1, 4), (1,)]
    assert res.n_params == 5 * 4 + 4 * 6 + 5 == fastnplm.NeuralNPLM(hidden=(5, 4)).n_params(3)
    np.testing.assert_allclose(res.predict(x), numpy_f(res.weights, x), rtol=1e-13, atol=1e-14)
    f_r, f_d = res.predict(ref), res.predict(dat)
    w = dat.shape[0] / ref.shape[0]
    assert res.t == pytest.approx(2 * (f_d.sum() - w * np.expm1(f_r).sum()), rel=1e-11)


def test_batch_equals_single_fits_and_any_thread_count():
    ref, _ = problem(1, nr=6000)
    rng = np.random.default_rng(11)
    datasets = [rng.exponential(size=n) for n in (310, 290, 305)]
    model = fastnplm.NeuralNPLM(epochs=60, lr=2e-2, history_every=20, threads=2)
    batch = model.fit_batch(ref, datasets, n_expected=300, seeds=[1, 2, 3])
    assert len(batch) == 3 and all(r.converged for r in batch)
    for k, (x, s) in enumerate(zip(datasets, (1, 2, 3))):
        single = fastnplm.NeuralNPLM(epochs=60, lr=2e-2, history_every=20, seed=s, threads=1).fit(
            ref, x, n_expected=300)
        assert single.t == batch[k].t
        np.testing.assert_array_equal(single.params, batch[k].params)
        np.testing.assert_array_equal(single.loss_history, batch[k].loss_history)
    assert len(batch[0].loss_history) == 4  # after 0, 20, 40, 60 updates
    # default seeds: the model's for all; default weights per data-set size
    again = model.fit_batch(ref, datasets[:2])
    assert again[0].t == model.fit(ref, datasets[0]).t and again[0].n_expected == pytest.approx(310)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_checkpointed_fit_resumes_after_a_kill_with_the_same_bits(tmp_path, monkeypatch, dtype):
    ref, dat = problem(d=2, nr=3000, nd=300, shift=0.3)
    kw = dict(hidden=(4,), clip=2.0, epochs=250, lr=1e-2, history_every=10, threads=2, dtype=dtype)
    whole = fastnplm.NeuralNPLM(**kw).fit(ref, dat)
    path = tmp_path / "fit.npz"
    # killed during the third chunk of 100, 100, 50 epochs: the state of 200 epochs is on disk
    calls, real = [], _core.mlp_train

    def dies_on_the_third_chunk(*args, **kwargs):
        calls.append(args[10])  # epochs of the chunk
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(_core, "mlp_train", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        fastnplm.NeuralNPLM(**kw).fit(ref, dat, checkpoint=path, checkpoint_every=100)
    assert calls == [100, 100, 50] and path.exists() and not (tmp_path / "fit.npz.tmp").exists()
    calls.clear()
    monkeypatch.setattr(_core, "mlp_train", lambda *a, **k: calls.append(a[10]) or real(*a, **k))
    resumed = fastnplm.NeuralNPLM(**kw).fit(ref, dat, checkpoint=path, checkpoint_every=100)
    assert calls == [50]  # only what was lost
    assert resumed.t == whole.t and np.array_equal(resumed.params, whole.params)
    assert np.array_equal(resumed.loss_history, whole.loss_history) and resumed.epochs_done == 250
    # a finished fit returns from its checkpoint without training
    calls.clear()
    again = fastnplm.NeuralNPLM(**kw).fit(ref, dat, checkpoint=path, checkpoint_every=100)
    assert calls == [] and again.t == whole.t
    # other settings or data: refused, the file left alone
    with pytest.raises(ValueError, match="other inputs or settings"):
        fastnplm.NeuralNPLM(**{**kw, "lr": 2e-2}).fit(ref, dat, checkpoint=path, checkpoint_every=100)
    with pytest.raises(ValueError, match="other inputs or settings"):
        fastnplm.NeuralNPLM(**kw).fit(ref, dat[:-1], checkpoint=path, checkpoint_every=100)
    with pytest.raises(ValueError, match="multiple of history_every"):
        fastnplm.NeuralNPLM(**kw).fit(ref, dat, checkpoint=tmp_path / "x", checkpoint_every=15)
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable neural-fit checkpoint"):
        fastnplm.NeuralNPLM(**kw).fit(ref, dat, checkpoint=tmp_path / "bad.npz", checkpoint_every=100)
    with pytest.raises(ValueError, match="optimizer='adam'"):
        fastnplm.NeuralNPLM(**{**kw, "optimizer": "lbfgsb"}).fit(ref, dat, checkpoint=tmp_path / "y")


def test_lbfgsb_reaches_at_least_adams_likelihood():
    ref, dat = problem(1, nr=5000, nd=500, seed=2, shift=0.2)
    adam = fastnplm.NeuralNPLM(clip=2.0, epochs=3000, lr=1e-2, history_every=0).fit(ref, dat)
    lb = fastnplm.NeuralNPLM(clip=2.0, epochs=3000, optimizer="lbfgsb").fit(ref, dat)
    assert lb.converged, lb.message
    assert np.abs(lb.params).max() <= 2.0
    assert lb.t >= adam.t - 1e-6 * abs(adam.t)
    assert lb.t > 0


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(clip=0), ValueError, "clip"),
    (dict(clip=-1.0), ValueError, "clip"),
    (dict(clip=float("nan")), ValueError, "clip"),
    (dict(hidden=()), ValueError, "hidden is empty"),
    (dict(hidden=(4, 0)), ValueError, "hidden widths must be >= 1"),
    (dict(hidden=(-2,)), ValueError, "hidden widths must be >= 1"),
    (dict(hidden=(2.5,)), TypeError, "integers"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(epochs=1.5), TypeError, "epochs"),
    (dict(lr=0), ValueError, "lr"),
    (dict(lr=-1e-3), ValueError, "lr"),
    (dict(optimizer="sgd"), ValueError, "optimizer"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(history_every=-1), ValueError, "history_every"),
    (dict(threads=0), ValueError, "threads"),
    (dict(beta1=1.0), ValueError, "beta1"),
    (dict(dtype="float16"), ValueError, "dtype"),
])
def test_bad_hyper_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fastnplm.NeuralNPLM(**kwargs)


def test_bad_samples():
    ref, dat = problem(2, nr=100, nd=10)
    m = fastnplm.NeuralNPLM(epochs=1)
    bad_ref = ref.copy()
    bad_ref[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        m.fit(bad_ref, dat)
    with pytest.raises(ValueError, match="inf"):
        m.fit(ref, np.full((4, 2), np.inf))
    with pytest.raises(ValueError, match="features"):
        m.fit(ref, dat[:, :1])
    with pytest.raises(ValueError, match="empty"):
        m.fit(ref, np.empty((0, 2)))
    with pytest.raises(ValueError, match="empty"):
        m.fit(np.empty((0, 2)), dat)
    with pytest.raises(ValueError, match="3-D"):
        m.fit(ref[None], dat)
    with pytest.raises(TypeError, match="numeric"):
        m.fit(ref, np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="reference_weights"):
        m.fit(ref, dat, reference_weights=-np.ones(100))
    with pytest.raises(ValueError, match="shape"):
        m.fit(ref, dat, reference_weights=np.ones(7))
    with pytest.raises(ValueError, match="either"):
        m.fit(ref, dat, reference_weights=1.0, n_expected=10)
    with pytest.raises(ValueError, match="seeds"):
        m.fit_batch(ref, [dat, dat], seeds=[1])
    with pytest.raises(ValueError, match="empty"):
        m.fit_batch(ref, [])
    res = m.fit(ref, dat)
    with pytest.raises(ValueError, match="features"):
        res.predict(np.ones((3, 5)))


def test_core_errors_arrive_as_value_error():
    ref, dat = problem(1, nr=50, nd=5)
    w = np.ones(50)
    p = _core.mlp_init(1, [4], 0)[None, :]
    with pytest.raises(ValueError, match="clip"):
        _core.mlp_train(ref, w, [dat], [4], p, 0.0, 1e-3, 0.9, 0.999, 1e-8, 10, 1)
    with pytest.raises(ValueError, match="epochs"):
        _core.mlp_train(ref, w, [dat], [4], p, 1.0, 1e-3, 0.9, 0.999, 1e-8, 0, 1)
    with pytest.raises(ValueError, match="hidden"):
        _core.mlp_loss_grad(ref, w, [dat], [], p)
    with pytest.raises(ValueError, match="params must have shape"):
        _core.mlp_loss_grad(ref, w, [dat, dat], [4], p)



def test_exp_floor_of_the_benchmark_validates_and_runs():
    # bench/neural_fit.py's floor: a time, positive and finite; bad sizes refused before work
    ms = _core.mlp_exp_floor_ms(1000, 5, threads=1, repeats=2)
    assert np.isfinite(ms) and ms > 0
    for args, match in [((7, 5), "n_events"), ((1000, 0), "exps_per_event"), ((1000, 5, 1, 0), "repeats"),
                        ((1000, 5, 1, 2, 4), "lanes")]:
        with pytest.raises(ValueError, match=match):
            _core.mlp_exp_floor_ms(*args)
    # 16 lanes where the CPU has AVX-512, refused elsewhere
    if _core.avx512_lanes():
        assert _core.mlp_exp_floor_ms(1000, 5, 1, 2, 16) > 0
    else:
        with pytest.raises(ValueError, match="AVX-512"):
            _core.mlp_exp_floor_ms(1000, 5, 1, 2, 16)


@pytest.mark.parametrize("hidden", [(4,), (3, 2)])
def test_float32_fit_is_the_same_at_8_and_16_lanes(monkeypatch, hidden):
    # FASTNPLM_F32_LANES forces the float32 pass's width (16 only with AVX-512); the fit's
    # parameters and loss history are the same bits at either (tests/cpp compares the passes)
    rng = np.random.default_rng(3)
    ref, dat = rng.exponential(size=(3001, 2)), rng.exponential(size=(307, 2))
    m = fastnplm.NeuralNPLM(hidden=hidden, clip=2.0, epochs=30, lr=0.02, history_every=5, threads=1,
                            dtype="float32")
    fits, lanes = [], []
    for force in ("8", "16"):
        monkeypatch.setenv("FASTNPLM_F32_LANES", force)
        lanes.append(_core.mlp_float32_lanes(2, list(hidden)))
        fits.append(m.fit(ref, dat))
    assert lanes == [8, 16 if _core.avx512_lanes() else 8]
    assert np.array_equal(fits[0].params, fits[1].params)
    assert np.array_equal(fits[0].loss_history, fits[1].loss_history) and fits[0].t == fits[1].t
    monkeypatch.delenv("FASTNPLM_F32_LANES")
    assert _core.mlp_float32_lanes(2, list(hidden)) == (16 if _core.avx512_lanes() and len(hidden) == 1 else 8)


U32 = 2.0**-24  # unit roundoff of float


def one_hidden_terms(p, d, h, ref, w, dat):
    """Per-event magnitudes for the float32 error bound of a d-h-1 network: |dL_e/dtheta|
    (events x params, flat order) and the absolute-error scale A_e of f(x_e) (every rounded
    quantity on the path to f times the factor carrying it into f)."""
    W1 = p[:h * d].reshape(h, d)
    b1, v, b2 = p[h * d:h * d + h], p[h * d + h:h * d + 2 * h], p[-1]
    x = np.concatenate([ref, dat])
    z = x @ W1.T + b1
    sg = 1.0 / (1.0 + np.exp(-z))
    ds = sg * (1.0 - sg)
    f = sg @ v + b2
    q = np.concatenate([w * np.exp(f[:len(ref)]), -np.ones(len(dat))])
    A = abs(b2) + (np.abs(v) * (sg + ds * (np.abs(b1) + np.abs(x) @ np.abs(W1).T))).sum(axis=1)
    delta = q[:, None] * v * ds
    grads = np.concatenate([(delta[:, :, None] * x[:, None, :]).reshape(len(x), -1), delta, q[:, None] * sg,
                            q[:, None]], axis=1)
    terms = np.concatenate([w * np.exp(f[:len(ref)]), np.abs(f[len(ref):])])
    return terms, grads, A


@pytest.mark.parametrize("d,h", [(1, 4), (3, 7)])
def test_float32_loss_and_gradient_within_derived_bound(d, h):
    """float32 mode against float64 at the same parameters. Each per-event term is computed from
    float inputs with a handful of float roundings: f(x_e) carries an absolute error <= c u A_e
    (A_e: every rounded quantity on the way to f times what carries it into f; c counts the
    roundings: input, d + 1 FMAs, exp (~2 ulp), the one-division sigmoid (~2h + 3), h FMAs of
    the output), so a term T_e = w e^f or f, or its derivative, is off by <= c u |T_e| (1 + A_e);
    gradient terms are also summed in float over the 4 events of a lane in a 32-event block
    (3 more roundings); all longer sums are double. Bound used: c = 2h + d + 16. It is a worst
    case (roundings aligned); the measured differences are ~200-400x below it."""
    ref, dat = problem(d, nr=20011, nd=1999, seed=4, shift=0.2)
    w = np.random.default_rng(2).uniform(0.5, 1.5, size=ref.shape[0]) * dat.shape[0] / ref.shape[0]
    hidden = [h]
    p = _core.mlp_init(d, hidden, 5, 9.0) + np.random.default_rng(3).normal(scale=0.5, size=h * (d + 2) + 1)
    l64, g64 = _core.mlp_loss_grad(ref, w, [dat], hidden, p[None, :], True, 2, "float64")
    l32, g32 = _core.mlp_loss_grad(ref, w, [dat], hidden, p[None, :], True, 2, "float32")
    terms, grads, A = one_hidden_terms(p, d, h, ref, w, dat)
    c = 2 * h + d + 16
    loss_bound = c * U32 * (terms * (1 + A)).sum()
    grad_bound = c * U32 * (np.abs(grads) * (1 + A)[:, None]).sum(axis=0)
    assert abs(l32[0] - l64[0]) <= loss_bound
    assert np.all(np.abs(g32[0] - g64[0]) <= grad_bound)
    # and the bound is not vacuous: float32 really differs, by well under the bound
    assert 0 < abs(l32[0] - l64[0]) and np.abs(g32[0] - g64[0]).max() > 0
    print(f"\nfloat32 vs float64 (d={d}, h={h}): |dL| = {abs(l32[0] - l64[0]):.3g} (bound {loss_bound:.3g}), "
          f"max |dg|/bound = {(np.abs(g32[0] - g64[0]) / grad_bound).max():.3g}")


def test_float32_training_tracks_float64():
    """Adam in float32 mode against float64 on the 1D toy (reduced): the same updates up to float
    rounding of the gradient; Adam normalises each step, so trajectories separate only slowly.
    Tolerances are empirical, ~30x what was measured here (|dt| 1e-6 in 1D, 3e-6 in 3D; params
    4e-8 in 1D)."""
    rng = np.random.default_rng(7)
    ref = rng.exponential(size=40000)
    dat = rng.exponential(size=400)
    kw = dict(hidden=(4,), clip=9.0, epochs=400, lr=1e-2, history_every=100, threads=2)
    r64 = fastnplm.NeuralNPLM(**kw).fit(ref, dat)
    r32 = fastnplm.NeuralNPLM(dtype="float32", **kw).fit(ref, dat)
    assert r32.converged and r32.dtype == "float32" and r64.dtype == "float64"
    assert abs(r32.t - r64.t) < 1e-4
    print(f"\nmax |dparams| = {np.abs(r32.params - r64.params).max():.3g}")
    np.testing.assert_allclose(r32.params, r64.params, rtol=0, atol=1e-6)
    # deeper networks go through the general path in float32 too
    ref3, dat3 = problem(3, nr=5003, nd=503, shift=0.3)
    kw3 = dict(hidden=(5, 3), clip=2.0, epochs=100, lr=1e-2, history_every=0, threads=2)
    a = fastnplm.NeuralNPLM(**kw3).fit(ref3, dat3)
    b = fastnplm.NeuralNPLM(dtype="float32", **kw3).fit(ref3, dat3)
    assert abs(a.t - b.t) < 1e-4
    print(f"\nfloat32 vs float64 training: 1D t {r32.t:.6f} vs {r64.t:.6f}; 3D t {b.t:.6f} vs {a.t:.6f}")


@pytest.mark.slow
def test_null_distribution_1d_toy_against_chi2_13():
    """The 1D toy of D'Agnolo & Wulzer: reference Exp(1), N_R = 200000, N(R) = 2000, 1-4-1, clip 9.

    Reduced to stay within the suite's time budget on two cores: 16 toys, 1500 Adam epochs at
    lr = 0.01 (the papers train ~10^5 epochs at lr = 1e-3), all toys in one batched call. The
    comparison with chi2(13) is reported (mean, KS p-value); asserted are only properties
    that hold for any under-trained fit: t finite, mean t positive and below the chi2(13) mean
    plus 4 standard errors.
    """
    rng = np.random.default_rng(2024)
    ref = rng.exponential(size=200000)
    toys = [rng.exponential(size=rng.poisson(2000)) for _ in range(16)]
    model = fastnplm.NeuralNPLM(hidden=(4,), clip=9.0, epochs=1500, lr=1e-2, history_every=0)
    res = model.fit_batch(ref, toys, n_expected=2000, seeds=list(range(16)))
    t = np.array([r.t for r in res])
    assert all(r.converged for r in res) and np.isfinite(t).all()
    ks = stats.kstest(t, stats.chi2(13).cdf)
    print(f"\nnull 1D toy, 16 toys x 1500 epochs (lr 0.01): mean t = {t.mean():.2f} (chi2_13: 13), "
          f"sd = {t.std(ddof=1):.2f} (chi2_13: {np.sqrt(26):.2f}), KS p = {ks.pvalue:.3g}; t = {np.round(t, 2)}")
    assert 0 < t.mean() < 13 + 4 * np.sqrt(26 / 16)
