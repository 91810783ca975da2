"""fastnplm.embed: the contrastive losses against loops over pairs, the embedder's determinism,
persistence and ONNX graph, and the pipeline against the model on hand-embedded arrays."""
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastnplm  # noqa: E402
from fastnplm.embed import PCA, Embedder, Pipeline, simclr_loss, supcon_loss  # noqa: E402


# -- the losses, written out as the papers' sums -------------------------------------------

def _cos(z):
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    return u @ u.T


def supcon_numpy(z, labels, tau):
    """Khosla et al. 2020, eq. 2: mean over anchors with positives of -1/|P(i)| sum_p log softmax."""
    s = _cos(z) / tau
    n = len(z)
    terms = []
    for i in range(n):
        denom = sum(np.exp(s[i, a]) for a in range(n) if a != i)
        pos = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if pos:
            terms.append(-np.mean([np.log(np.exp(s[i, p]) / denom) for p in pos]))
    return np.mean(terms)


def simclr_numpy(z1, z2, tau):
    """Chen et al. 2020, eq. 1 over the 2n views (k and k+n are the two views of event k)."""
    z = np.concatenate([z1, z2])
    s = _cos(z) / tau
    m, n = len(z), len(z1)
    loss = 0.0
    for i in range(m):
        j = (i + n) % m
        loss += -np.log(np.exp(s[i, j]) / sum(np.exp(s[i, k]) for k in range(m) if k != i))
    return loss / m


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2, 2], [0, 1, 1, 1, 0, 2, 3], [5, 5, 5, 5, 5, 9, 9]])
def test_supcon_matches_the_loop(labels):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(7, 3))
    for tau in (0.1, 0.5):
        got = supcon_loss(torch.tensor(z), torch.tensor(labels), tau).item()
        assert got == pytest.approx(supcon_numpy(z, labels, tau), rel=1e-12)


def test_simclr_matches_the_loop_and_is_supcon_with_pairs():
    rng = np.random.default_rng(2)
    z1, z2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    got = simclr_loss(torch.tensor(z1), torch.tensor(z2), 0.2).item()
    assert got == pytest.approx(simclr_numpy(z1, z2, 0.2), rel=1e-12)
    pairs = torch.tensor(list(range(5)) * 2)
    assert supcon_loss(torch.tensor(np.concatenate([z1, z2])), pairs, 0.2).item() == pytest.approx(got, rel=1e-12)


def test_loss_gradients_against_finite_differences():
    rng = np.random.default_rng(3)
    z = torch.tensor(rng.normal(size=(6, 3)), requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    assert torch.autograd.gradcheck(lambda v: supcon_loss(v, labels, 0.3), (z,))
    z2 = torch.tensor(rng.normal(size=(6, 3)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: simclr_loss(a, b, 0.3), (z, z2))


def test_loss_inputs_are_checked():
    z = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="labels has 3"):
        supcon_loss(z + 1, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="no event of the batch has a positive"):
        supcon_loss(torch.randn(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="temperature"):
        supcon_loss(torch.randn(3, 2), torch.tensor([0, 0, 1]), 0.0)
    with pytest.raises(ValueError, match="same shape"):
        simclr_loss(torch.randn(3, 2), torch.randn(4, 2))


# -- the embedder -----------------------------------------------------------------------

def _labelled(n=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, d))
    x[:, 0] += 2.0 * y
    x[:, 1] -= 2.0 * (y == 2)
    return x, y


@pytest.fixture(scope="module")
def trained():
    x, y = _labelled()
    return x, y, Embedder(dim=3, widths=(16, 16), epochs=6, batch_size=64, patience=3, seed=4).fit(x, y)


def test_training_learns_and_is_deterministic(trained):
    x, y, emb = trained
    assert len(emb.history_["train"]) == len(emb.history_["validation"]) >= 1
    assert emb.history_["train"][-1] < emb.history_["train"][0]
    assert emb.best_epoch_ == int(np.argmin(emb.history_["validation"]))
    z = emb.transform(x)
    assert z.shape == (600, 3) and z.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-6)
    # classes separate: each event's nearest class mean in the embedding is mostly its own
    means = np.stack([z[y == k].mean(0) for k in range(3)])
    assert np.mean(np.argmax(z @ means.T, axis=1) == y) > 0.7
    again = Embedder(dim=3, widths=(16, 16), epochs=6, batch_size=64, patience=3, seed=4).fit(x, y)
    assert again.history_ == emb.history_
    np.testing.assert_array_equal(again.transform(x), z)
    other = Embedder(dim=3, widths=(16, 16), epochs=6, batch_size=64, patience=3, seed=5).fit(x, y)
    assert not np.array_equal(other.transform(x), z)


def test_transform_does_not_depend_on_batching(trained):
    x, _, emb = trained
    z = emb.transform(x)
    np.testing.assert_array_equal(emb.transform(x, batch_size=7), z)
    parts = [emb.transform(x[a:b]) for a, b in ((0, 1), (1, 14), (14, 301), (301, 600))]
    np.testing.assert_array_equal(np.concatenate(parts), z)


def test_save_load_round_trip(trained, tmp_path):
    x, _, emb = trained
    emb.save(tmp_path / "emb.npz")
    back = Embedder.load(tmp_path / "emb.npz")
    for (w, b), (w2, b2) in zip(emb.weights(), back.weights()):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(b, b2)
    np.testing.assert_array_equal(back.transform(x), emb.transform(x))
    assert back.history_ == emb.history_ and back.classes_ == ["0", "1", "2"]
    json.dumps(back.to_dict())


def test_onnx_matches_transform(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x, _, emb = trained
    raw = x * 3.0 + 1.0
    pre = fastnplm.preprocessing.Standardize().fit(raw)
    emb.export_onnx(tmp_path / "emb.onnx", preprocessing=pre)
    sess = ort.InferenceSession(str(tmp_path / "emb.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["embedding"], {"x": raw})[0]
    assert got.shape == (600, 3) and got.dtype == np.float64
    # the same float64 computation rounded to float32: equal up to one float32 rounding step
    np.testing.assert_allclose(got, emb.transform(pre.transform(raw)), rtol=0, atol=1.2e-7)


def test_simclr_training_with_an_augmentation():
    x, _ = _labelled(n=300, d=6, seed=1)

    def jitter(b, rng):
        return b + rng.normal(scale=0.3, size=b.shape).astype(np.float32)

    emb = Embedder(dim=3, widths=(16,), epochs=4, batch_size=50, seed=0, progress=True).fit(x, augment=jitter)
    assert emb.loss_ == "simclr" and emb.history_["train"][-1] < emb.history_["train"][0]
    again = Embedder(dim=3, widths=(16,), epochs=4, batch_size=50, seed=0).fit(x, augment=jitter)
    np.testing.assert_array_equal(again.transform(x), emb.transform(x))
    with pytest.raises(ValueError, match="augment returned shape"):
        Embedder(epochs=1, seed=0).fit(x, augment=lambda b, rng: b[:, :2])


def test_bad_input_is_refused_before_training():
    x, y = _labelled(n=50)
    emb = Embedder(epochs=1)
    with pytest.raises(ValueError, match="labels has 49 entries"):
        emb.fit(x, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        emb.fit(x, np.zeros(50))
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        emb.fit(bad, y)
    with pytest.raises(ValueError, match="labels= .* or augment="):
        emb.fit(x)
    with pytest.raises(TypeError, match="callable"):
        emb.fit(x, augment="noise")
    with pytest.raises(ValueError, match="not trained"):
        emb.transform(x)
    with pytest.raises(ValueError, match="2-D"):
        emb.fit(x[None], y)
    with pytest.raises(ValueError, match="activation"):
        Embedder(activation="gelu")
    with pytest.raises(ValueError, match="validation"):
        Embedder(validation=1.0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no usable CUDA"):
            Embedder(device="cuda")
    emb.fit(x, y)
    with pytest.raises(ValueError, match="has 3 features but the reference has 8"):
        emb.transform(x[:, :3])


def test_pca_against_the_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 6)) @ rng.normal(size=(6, 6))
    p = PCA(dim=2).fit(x)
    z = p.transform(x)
    evals = np.linalg.eigvalsh(np.cov(x.T, bias=True))[::-1]
    np.testing.assert_allclose(z.var(axis=0), evals[:2], rtol=1e-10)
    with pytest.raises(ValueError, match="at least 7 features"):
        PCA(dim=7).fit(x)


# -- the pipeline ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipeline(trained):
    x, y, emb = trained
    rng = np.random.default_rng(9)
    raw = lambda n: rng.normal(size=(n, 8)) * 2.0 + 5.0  # noqa: E731
    pre = fastnplm.preprocessing.Standardize().fit(raw(1000))
    pipe = Pipeline(emb, fastnplm.KernelNPLM(M=40, sigma=0.5, lam=1e-5, seed=0), preprocessing=pre)
    reference, pool, data = raw(2000), raw(2000), raw(150)
    data[:30, 0] += 6.0  # a shifted corner, in the raw features
    return pipe, reference, pool, data


def test_pipeline_fit_and_calibration_equal_the_model_on_embedded_arrays(pipeline):
    pipe, reference, pool, data = pipeline
    by_hand = lambda v: pipe.embedder.transform(pipe.preprocessing.transform(v))  # noqa: E731
    np.testing.assert_array_equal(pipe.transform(data), by_hand(data))
    a = pipe.fit(reference, data, n_expected=150.0)
    b = pipe.model.fit(by_hand(reference), by_hand(data), n_expected=150.0)
    assert a.t == b.t
    np.testing.assert_array_equal(a.alpha, b.alpha)
    cal = pipe.calibrate(reference, pool, toys=12, n_expected=150.0, seed=3, progress=False)
    cal2 = fastnplm.calibrate(pipe.model, by_hand(reference), by_hand(pool), toys=12, n_expected=150.0, seed=3,
                              progress=False)
    np.testing.assert_array_equal(cal.t, cal2.t)
    out = pipe.test(reference, data)
    assert out["per_width"][0]["t"] == cal2.test(by_hand(reference), by_hand(data))["per_width"][0]["t"]
    mon = pipe.monitor(reference)
    got = mon.test(data)
    assert got["t"] == pytest.approx(out["per_width"][0]["t"], rel=1e-9)
    assert 0 <= got["embed_seconds"] <= got["seconds"]
    assert mon.fit(data).t == pytest.approx(got["t"], rel=1e-9)


def test_pipeline_report_and_onnx(pipeline, tmp_path):
    pytest.importorskip("matplotlib")
    ort = pytest.importorskip("onnxruntime")
    pipe, reference, pool, data = pipeline
    # its own toys (pool=), not the calibration another test left on the module's pipeline
    rec = pipe.report(reference, data, names=[f"x{i}" for i in range(8)], path=tmp_path / "r.html", quantile=0.95,
                      calibration=None, pool=pool, toys=12, n_expected=150.0, seed=3)
    page = (tmp_path / "r.html").read_text()
    assert "original features of the flagged events" in page.lower() and page.count("data:image/png") == 4
    assert rec["embedding_dim"] == 3 and rec["flagged"]["n_data"] == len(rec["flagged"]["data_events"])
    assert json.loads((tmp_path / "r.json").read_text())["flagged"]["quantile"] == 0.95
    fit = pipe.fit(reference, data, n_expected=150.0)
    pipe.export_onnx(fit, tmp_path / "ef.onnx")
    sess = ort.InferenceSession(str(tmp_path / "ef.onnx"), providers=["CPUExecutionProvider"])
    f_onnx = sess.run(["f"], {"x": data})[0]
    np.testing.assert_allclose(f_onnx, fit.predict(pipe.transform(data)), rtol=0, atol=1e-5)


def test_pipeline_train_fits_the_preprocessing_on_the_training_sample_only():
    x, y = _labelled(n=200, d=5)
    pipe = Pipeline(PCA(dim=2)).train(x * 10 + 3, y)
    np.testing.assert_allclose(pipe.preprocessing.offset_, (x * 10 + 3).mean(0))
    assert pipe.transform(x).shape == (200, 2)
    with pytest.raises(ValueError, match="no calibration"):
        pipe.test(x, x)
    with pytest.raises(ValueError, match="labels must have shape"):
        pipe.train(x, y[:10])
    with pytest.raises(TypeError, match="fit.*transform"):
        Pipeline(object())


def test_fastnplm_imports_without_torch():
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ImportError('no torch here')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "import fastnplm\n"
            "try:\n    import fastnplm.embed\nexcept ImportError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ERR" in out and "fastnplm[embed]" in out
