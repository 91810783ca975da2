"""The contrastive embedder (an MLP onto the unit sphere) and the PCA baseline.

Training runs in float32 (on the CPU by default, or ``device="cuda"``); the embedding of
new events (:meth:`Embedder.transform`) is computed in float64 from the trained weights and
rounded to float32, their precision. The rounding is what makes ``transform`` independent
of how the events are batched: the BLAS products behind a layer change their last float64
bits with the number of rows and an event's position among them (measured with torch's
MKL), and those ~1e-16 relative differences survive the rounding to float32 only when a
value lies that close to a float32 rounding boundary (none in 2.3 million values tested).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

from .. import _checks
from .losses import simclr_loss, supcon_loss

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "silu": torch.nn.functional.silu}
FORMAT = "fastnplm-embedder"
FORMAT_VERSION = 1
EPS = 1e-12  # the norm floor of the projection onto the sphere (torch.nn.functional.normalize's)


def _labels(labels, n):
    """Integer codes 0..K-1 of the labels (any hashable values), checked against n events."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D (one per event), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"labels has {y.shape[0]} entries but x has {n} events")
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"the supervised contrastive loss needs at least 2 classes, got {classes.size} "
                         f"({classes.tolist()}); for unlabelled events pass augment= (SimCLR) instead")
    counts = np.bincount(codes)
    if counts.max() < 2:
        raise ValueError("every class has a single event: no event has a positive")
    return classes, codes.astype(np.int64)


class Embedder:
    """An MLP from d features to ``dim`` dimensions on the unit sphere, trained with a contrastive loss.

    With ``labels`` the loss is the supervised contrastive one (events of one class pulled
    together, :func:`fastnplm.embed.supcon_loss`); with ``augment`` and no labels it is
    SimCLR's (two augmented views of an event pulled together,
    :func:`fastnplm.embed.simclr_loss`). Adam on minibatches; a ``validation`` fraction of
    the events is held out, its loss recorded each epoch, and training stops after
    ``patience`` epochs without improvement, keeping the best epoch's weights.

    Parameters
    ----------
    dim : int
        Dimension of the embedding (the output lies on the unit sphere of R^dim).
    widths : sequence of int
        Widths of the hidden layers.
    activation : {"relu", "silu", "tanh"}
    temperature : float
        Temperature of the cosine similarities in the loss.
    epochs : int
        Maximum number of passes over the training events.
    batch_size : int
        Events per minibatch (the contrastive loss compares all pairs of a batch).
    lr, weight_decay : float
        Adam's step size and L2 weight decay.
    validation : float
        Fraction of the events held out for the validation loss and early stopping (0: none;
        then the last epoch's weights are kept).
    patience : int
        Epochs without a validation improvement larger than ``min_delta`` before stopping.
    min_delta : float
    seed : int
        Seeds the initialisation, the validation split, the minibatch order and the
        augmentations: on the CPU, the same seed, data and thread count give the same bits.
    device : {"cpu", "cuda"} or torch.device
        Where training runs ("cuda" needs a torch built with CUDA).
    progress : bool
        A tqdm progress bar over the epochs (``pip install tqdm``).

    Attributes
    ----------
    history_ : dict
        ``train`` and ``validation``: the mean loss of each epoch.
    best_epoch_ : int
        The epoch (from 0) whose weights were kept.
    seconds_ : float
        Training time.

    Examples
    --------
    >>> emb = Embedder(dim=4, widths=(64, 64), epochs=30, seed=0).fit(x_train, labels)
    >>> z = emb.transform(x)          # (n, 4), rows of unit norm
    """

    def __init__(self, dim=4, widths=(64, 64), activation="relu", temperature=0.1, epochs=100, batch_size=256,
                 lr=1e-3, weight_decay=0.0, validation=0.2, patience=10, min_delta=0.0, seed=0, device="cpu",
                 progress=False):
        self.dim = _checks.positive_int(dim, "dim")
        self.widths = tuple(_checks.positive_int(w, "widths entry") for w in widths)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.temperature = _checks.positive_number(temperature, "temperature")
        self.epochs = _checks.positive_int(epochs, "epochs")
        self.batch_size = _checks.positive_int(batch_size, "batch_size")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (the loss compares events of a batch)")
        self.lr = _checks.positive_number(lr, "lr")
        self.weight_decay = _checks.positive_number(weight_decay, "weight_decay", allow_zero=True)
        self.validation = float(validation)
        if not 0 <= self.validation < 1:
            raise ValueError(f"validation must be a fraction in [0, 1), got {validation!r}")
        self.patience = _checks.positive_int(patience, "patience")
        self.min_delta = _checks.positive_number(min_delta, "min_delta", allow_zero=True)
        self.seed = int(seed)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but this torch has no usable CUDA device")
        self.progress = bool(progress)
        self.n_features_in_: int | None = None
        self.loss_: str | None = None
        self.classes_: list | None = None
        self.history_: dict = {"train": [], "validation": []}
        self.best_epoch_: int | None = None
        self.seconds_: float | None = None
        self._weights: list | None = None  # [(W (out, in), b (out,))] float64 on the CPU

    # -- the network ---------------------------------------------------------------------

    def _network(self, d):
        sizes = [d, *self.widths, self.dim]
        with torch.random.fork_rng(devices=[]):  # torch's default initialisation, from our seed only
            torch.manual_seed(self.seed)
            layers = [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        return torch.nn.ModuleList(layers).to(self.device)

    def _forward(self, layers, x):
        act = ACTIVATIONS[self.activation]
        for i, layer in enumerate(layers):
            x = layer(x)
            if i < len(layers) - 1:
                x = act(x)
        return torch.nn.functional.normalize(x, dim=1, eps=EPS)

    @property
    def fitted(self) -> bool:
        """Whether the embedder has weights (trained or loaded)."""
        return self._weights is not None

    # -- training ------------------------------------------------------------------------

    def fit(self, x, labels=None, augment=None):
        """Train the embedder on events x.

        Parameters
        ----------
        x : array_like (n, d)
            Training events (already preprocessed: the embedder uses them as given).
        labels : array_like (n,) or None
            Class of each event (at least two classes): the supervised contrastive loss.
        augment : callable(x, rng) -> array of x's shape, or None
            Without labels: returns a random augmented copy of a batch of events (a float32
            (b, d) array; ``rng`` is a numpy Generator derived from ``seed``); the SimCLR loss
            on two views of each batch.

        Returns
        -------
        self
        """
        arr = _checks.as_events(x, "x")
        n, d = arr.shape
        if labels is not None:
            classes, y = _labels(labels, n)
            self.classes_ = classes.tolist()
            self.loss_ = "supcon"
        elif augment is not None:
            if not callable(augment):
                raise TypeError("augment must be a callable (x, rng) -> augmented x")
            y, self.loss_, self.classes_ = None, "simclr", None
        else:
            raise ValueError("pass labels= (supervised contrastive loss) or augment= (SimCLR)")
        n_val = int(round(self.validation * n))
        if n_val == 1 or (self.validation > 0 and n - n_val < 2):
            raise ValueError(f"{n} events are too few for a validation fraction of {self.validation}")
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(n)
        train, val = order[n_val:], order[:n_val]
        x32 = torch.from_numpy(arr.astype(np.float32)).to(self.device)
        y_t = None if y is None else torch.from_numpy(y).to(self.device)
        layers = self._network(d)
        opt = torch.optim.Adam(layers.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        def batch_loss(idx, gen):
            if y_t is not None:
                return supcon_loss(self._forward(layers, x32[idx]), y_t[idx], self.temperature)
            views = []
            for _ in range(2):
                v = np.asarray(augment(arr[idx.cpu().numpy()].astype(np.float32), gen), dtype=np.float32)
                if v.shape != (idx.shape[0], d) or not np.isfinite(v).all():
                    raise ValueError(f"augment returned shape {v.shape} or non-finite values; expected a finite "
                                     f"array of shape {(idx.shape[0], d)}")
                views.append(self._forward(layers, torch.from_numpy(v).to(self.device)))
            return simclr_loss(views[0], views[1], self.temperature)

        def batches(idx):
            # the last batch joins the one before when it would hold fewer than 2 events
            cuts = list(range(0, idx.size, self.batch_size))
            if len(cuts) > 1 and idx.size - cuts[-1] < 2:
                cuts.pop()
            return [torch.from_numpy(idx[a:b]).to(self.device) for a, b in zip(cuts, cuts[1:] + [idx.size])]

        bar = None
        if self.progress:
            from .._optional import require
            bar = require("tqdm", "Embedder(progress=True)").tqdm(total=self.epochs, desc="embedder", unit="epoch")
        self.history_ = {"train": [], "validation": []}
        best, best_state, wait = np.inf, None, 0
        self.best_epoch_ = self.epochs - 1
        start = time.perf_counter()
        for epoch in range(self.epochs):
            layers.train()
            total, count = 0.0, 0
            for idx in batches(rng.permutation(train)):
                opt.zero_grad()
                loss = batch_loss(idx, rng)
                loss.backward()
                opt.step()
                total, count = total + float(loss.detach()) * idx.shape[0], count + idx.shape[0]
            self.history_["train"].append(total / count)
            if n_val:
                with torch.no_grad():
                    vgen = np.random.default_rng([self.seed, 1])  # the same views every epoch
                    vl = [(float(batch_loss(idx, vgen)), idx.shape[0]) for idx in batches(val)]
                v = sum(a * b for a, b in vl) / sum(b for _, b in vl)
                self.history_["validation"].append(v)
                if v < best - self.min_delta:
                    best, wait, self.best_epoch_ = v, 0, epoch
                    best_state = [p.detach().clone() for p in layers.parameters()]
                else:
                    wait += 1
            if bar is not None:
                bar.set_postfix(loss=f"{self.history_['train'][-1]:.4f}",
                                val=f"{self.history_['validation'][-1]:.4f}" if n_val else "-")
                bar.update()
            if n_val and wait >= self.patience:
                break
        if bar is not None:
            bar.close()
        if best_state is not None:
            with torch.no_grad():
                for p, b in zip(layers.parameters(), best_state):
                    p.copy_(b)
        self.seconds_ = time.perf_counter() - start
        self.n_features_in_ = d
        self._weights = [(layer.weight.detach().cpu().double(), layer.bias.detach().cpu().double())
                         for layer in layers]
        return self

    # -- embedding -----------------------------------------------------------------------

    def _layers(self) -> list:
        if self._weights is None:
            raise ValueError("the Embedder is not trained: call fit(x, labels) or Embedder.load(path)")
        return self._weights

    def transform(self, x, batch_size: int = 65536) -> np.ndarray:
        """Embed events: (n, d) -> (n, dim), rows of unit norm.

        Computed in float64 on the CPU, ``batch_size`` events at a time, and rounded to
        float32 (the weights' precision): the result does not depend on ``batch_size`` or on
        how the events are split among calls (see the module's note).
        """
        layers = self._layers()
        arr = _checks.as_events(x, "x", d=self.n_features_in_)
        step = _checks.positive_int(batch_size, "batch_size")
        out = np.empty((arr.shape[0], self.dim), dtype=np.float32)
        act = ACTIVATIONS[self.activation]
        with torch.no_grad():
            for a in range(0, arr.shape[0], step):
                h = torch.from_numpy(arr[a:a + step])
                for i, (w, b) in enumerate(layers):
                    h = torch.nn.functional.linear(h, w, b)
                    if i < len(layers) - 1:
                        h = act(h)
                out[a:a + step] = torch.nn.functional.normalize(h, dim=1, eps=EPS).float().numpy()
        return out.astype(np.float64)

    def fit_transform(self, x, labels=None, augment=None) -> np.ndarray:
        """``fit(x, labels, augment).transform(x)``."""
        return self.fit(x, labels, augment).transform(x)

    # -- persistence ---------------------------------------------------------------------

    def weights(self) -> list:
        """The trained layers as float64 numpy arrays ``[(W (out, in), b (out,)), ...]``."""
        return [(w.numpy().copy(), b.numpy().copy()) for w, b in self._layers()]

    def to_dict(self) -> dict:
        """Settings and training record (JSON-friendly; the weights are in :meth:`save`'s file)."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "dim": self.dim, "widths": list(self.widths),
                "activation": self.activation, "temperature": self.temperature, "epochs": self.epochs,
                "batch_size": self.batch_size, "lr": self.lr, "weight_decay": self.weight_decay,
                "validation": self.validation, "patience": self.patience, "min_delta": self.min_delta,
                "seed": self.seed, "n_features_in": self.n_features_in_, "loss": self.loss_,
                "classes": None if self.classes_ is None else [str(c) for c in self.classes_],
                "history": self.history_, "best_epoch": self.best_epoch_, "seconds": self.seconds_}

    def save(self, path) -> None:
        """Write settings and weights to one ``.npz`` file (no pickle); :meth:`load` restores it exactly."""
        layers = self._layers()
        arrays = {f"W{i}": w.numpy() for i, (w, _) in enumerate(layers)}
        arrays.update({f"b{i}": b.numpy() for i, (_, b) in enumerate(layers)})
        with open(os.fspath(path), "wb") as fh:
            np.savez(fh, config=np.array(json.dumps(self.to_dict())), **arrays)

    @classmethod
    def load(cls, path, device="cpu") -> Embedder:
        """Read an embedder written by :meth:`save` (``device`` for further use)."""
        with np.load(os.fspath(path), allow_pickle=False) as f:
            cfg = json.loads(str(f["config"]))
            if cfg.get("format") != FORMAT or cfg.get("version") != FORMAT_VERSION:
                raise ValueError(f"{path} is not a fastnplm embedder file of version {FORMAT_VERSION}")
            n_layers = len(cfg["widths"]) + 1
            weights = [(torch.from_numpy(f[f"W{i}"].astype(np.float64)), torch.from_numpy(f[f"b{i}"].astype(np.float64)))
                       for i in range(n_layers)]
        keys = ("dim", "widths", "activation", "temperature", "epochs", "batch_size", "lr", "weight_decay",
                "validation", "patience", "min_delta", "seed")
        obj = cls(**{k: cfg[k] for k in keys}, device=device)
        cls._restore(obj, cfg, weights)
        return obj

    def _restore(self, cfg, weights):
        self.n_features_in_, self.loss_, self.classes_ = cfg["n_features_in"], cfg["loss"], cfg["classes"]
        self.history_, self.best_epoch_, self.seconds_ = cfg["history"], cfg["best_epoch"], cfg["seconds"]
        self._weights = weights

    def export_onnx(self, path, preprocessing=None):
        """Write the embedding as an ONNX model: float64 input ``x`` (n, d), output ``embedding`` (n, dim).

        The graph is :meth:`transform`'s computation (float64 layers, projection onto the
        sphere, rounding to float32, returned as float64), preceded by the affine
        preprocessing when given (``Standardize``, ``DivideByMean`` or a (shift, scale)
        pair: ``(x - shift) / scale``), so that raw events go in.

        Returns
        -------
        onnx.ModelProto
        """
        layers = self.weights()
        from ..io.onnx_export import GraphBuilder

        g = GraphBuilder()
        const, node, onnx = g.const, g.node, g.onnx
        h = "x"
        if preprocessing is not None:
            shift, scale = _affine(preprocessing)
            if shift.shape != (self.n_features_in_,):
                raise ValueError(f"the preprocessing has {shift.size} features, the embedder {self.n_features_in_}")
            h = node("Div", [node("Sub", [h, const("shift", shift)], "shifted"), const("scale", scale)], "x_pre")
        for i, (w, b) in enumerate(layers):
            h = node("Add", [node("MatMul", [h, const(f"W{i}T", w.T)], f"mm{i}"), const(f"b{i}", b)], f"lin{i}")
            if i < len(layers) - 1:
                if self.activation == "relu":
                    h = node("Relu", [h], f"act{i}")
                elif self.activation == "tanh":
                    h = node("Tanh", [h], f"act{i}")
                else:  # silu(x) = x sigmoid(x)
                    h = node("Mul", [h, node("Sigmoid", [h], f"sig{i}")], f"act{i}")
        norm = node("ReduceL2", [h], "norm", axes=[1], keepdims=1)
        unit = node("Div", [h, node("Max", [norm, const("eps", np.array(EPS))], "norm_floor")], "unit")
        f32 = node("Cast", [unit], "unit_f32", to=onnx.TensorProto.FLOAT)
        node("Cast", [f32], "embedding", to=onnx.TensorProto.DOUBLE)
        return g.save(path, "fastnplm_embedder", [("x", ["n", self.n_features_in_])], [("embedding", ["n", self.dim])],
                      "fastnplm embedding onto the unit sphere; input: float64 events")

    def __repr__(self) -> str:
        state = "unfitted" if self._weights is None else f"{self.n_features_in_} -> {self.dim}, {self.loss_}"
        return f"Embedder(widths={self.widths}, dim={self.dim}, {state})"


def _affine(preprocessing):
    """(shift, scale) float64 arrays of an affine scaler or a (shift, scale) pair."""
    if isinstance(preprocessing, (tuple, list)) and len(preprocessing) == 2:
        shift, scale = preprocessing
    else:
        shift, scale = getattr(preprocessing, "offset_", None), getattr(preprocessing, "scale_", None)
        if shift is None or scale is None:
            raise TypeError("preprocessing must be a fitted Standardize/DivideByMean or a (shift, scale) pair")
    shift = np.atleast_1d(np.asarray(shift, dtype=np.float64))
    scale = np.atleast_1d(np.asarray(scale, dtype=np.float64))
    if shift.shape != scale.shape or shift.ndim != 1:
        raise ValueError("shift and scale must be 1-D arrays of the same length")
    return shift, scale


class PCA:
    """The linear baseline: projection onto the ``dim`` leading principal components.

    Components from the singular value decomposition of the centred training events; the
    projection keeps the events' scale (no whitening), so distances in the subspace are
    distances in the input. ``labels`` are accepted and ignored (same call as
    :class:`Embedder`).

    Parameters
    ----------
    dim : int
    """

    def __init__(self, dim=4):
        self.dim = _checks.positive_int(dim, "dim")
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None
        self.explained_variance_ratio_: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        """Whether fit has run."""
        return self.components_ is not None

    def fit(self, x, labels=None, augment=None):
        """Principal components of x, shape (n, d) with d >= dim."""
        arr = _checks.as_events(x, "x")
        if arr.shape[1] < self.dim:
            raise ValueError(f"PCA to {self.dim} dimensions needs at least {self.dim} features, got {arr.shape[1]}")
        self.mean_ = arr.mean(axis=0)
        _, s, vt = np.linalg.svd(arr - self.mean_, full_matrices=False)
        self.components_ = vt[: self.dim]
        self.explained_variance_ratio_ = (s[: self.dim] ** 2) / np.sum(s ** 2)
        return self

    def transform(self, x) -> np.ndarray:
        """(x - mean) projected on the components: (n, dim)."""
        if self.components_ is None:
            raise ValueError("the PCA is not fitted: call fit(x) first")
        arr = _checks.as_events(x, "x", d=self.components_.shape[1])
        return (arr - self.mean_) @ self.components_.T

    def to_dict(self) -> dict:
        """Settings (JSON-friendly)."""
        return {"kind": "pca", "dim": self.dim,
                "explained_variance_ratio": None if self.explained_variance_ratio_ is None
                else self.explained_variance_ratio_.tolist()}
