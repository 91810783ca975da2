"""Neural NPLM: a small clipped MLP trained on the NPLM loss, on the compiled core.

Method: docs/method.md section 3 (D'Agnolo & Wulzer 2019; D'Agnolo et al. 2021).
f is a fully connected network d-h_1-...-h_k-1 with sigmoid hidden units and a linear
output; the loss L = sum_R w_e (e^f - 1) - sum_D f is minimised full batch with Adam, every
parameter (weights and biases) clipped to [-clip, clip] after every update; t = -2 L.

Initialisation (the same in the C++ core, ``fastnplm::mlp_init``, and in the PyTorch test):
the weights of each layer are uniform in [-a, a], a = sqrt(6 / (fan_in + fan_out)) (Glorot
uniform, Keras' default, which the original NPLM code uses), biases zero; the uniforms are
u = (s >> 11) * 2**-53 for the successive outputs s of splitmix64 seeded with ``seed``, drawn
layer by layer, each weight matrix in (out, in) row-major order; then clipped to [-clip, clip].
Adam is torch.optim.Adam's update (bias-corrected, eps added to the corrected sqrt(v)).
"""
from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import time
import zipfile
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from .. import _checks, _core
from .._info import BACKENDS, resolve_backend
from ._newton import projected_newton, restart_seed

log = logging.getLogger("fastnplm")

OPTIMIZERS = ("adam", "lbfgsb", "newton")
CHECKPOINT_EPOCHS = 10000  # default epochs between checkpoints of a fit (~5 s of the 1D toy)
DTYPES = ("float64", "float32")
RESTART_AGREEMENT = 1e-6  # Newton starts whose final L is within this of the best agree with it
NEWTON_RESTARTS = 3  # default starts of a Newton fit (docs/neural.md: how often starts disagree)
# Newton's coarse stage: every k-th reference event, k = N_R // max(COARSE_PER_DATA * N_D, COARSE_MIN)
COARSE_PER_DATA = 10
COARSE_MIN = 20_000
COARSE_TOL = 1e-3  # the coarse stage stops at this projected gradient; the full sample then meets newton_tol


def _hidden_arg(hidden) -> tuple:
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    try:
        widths = tuple(hidden)
    except TypeError:
        raise TypeError(f"hidden must be a sequence of positive integers, got {type(hidden).__name__}") from None
    if not widths:
        raise ValueError("hidden is empty: give at least one hidden layer width, e.g. hidden=(4,)")
    for h in widths:
        if isinstance(h, bool) or not isinstance(h, numbers.Integral):
            raise TypeError(f"hidden widths must be integers, got {h!r} in {widths!r}")
        if h < 1:
            raise ValueError(f"hidden widths must be >= 1, got {h} in {widths!r}")
    return tuple(int(h) for h in widths)


def _seed_arg(seed, name="seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer, got {type(seed).__name__}")
    value = int(seed)
    if not 0 <= value < 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {seed}")
    return value


def _unit_interval(value, name) -> float:
    v = _checks.positive_number(value, name, allow_zero=True)
    if v >= 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v


def split_params(params: np.ndarray, d: int, hidden: tuple) -> list:
    """The flat parameter vector as [W_1, b_1, ..., W_out, b_out], W_l of shape (out, in)."""
    out, off, nin = [], 0, d
    for nout in (*hidden, 1):
        out.append(params[off:off + nin * nout].reshape(nout, nin))
        off += nin * nout
        out.append(params[off:off + nout])
        off += nout
        nin = nout
    return out


@dataclass(repr=False)
class NeuralFitResult:
    """Outcome of :meth:`NeuralNPLM.fit`: the statistic, the fitted network, diagnostics.

    ``t = -2 L`` at the final parameters; ``loss_history[i]`` is L after
    ``i * history_every`` Adam updates (L-BFGS-B: after each iteration; Newton: after each
    step of the best start, the start first);
    ``converged`` is False when the loss or gradient turned NaN/inf (Adam; the fit then
    stopped there) or when L-BFGS-B reported failure (Newton: when the best start did not
    meet ``newton_tol``). Newton fits also record ``restart_losses`` (the final L of every
    start, in order) and ``restarts_at_best`` (how many of them ended within
    ``RESTART_AGREEMENT`` of the best, the best included); other fits leave them empty and 0.
    """

    t: float
    loss: float
    params: np.ndarray
    d: int
    hidden: tuple
    clip: float
    optimizer: str
    epochs: int
    epochs_done: int
    converged: bool
    loss_history: np.ndarray
    history_every: int
    seed: int
    seconds: float
    n_reference: int
    n_data: int
    n_expected: float
    threads: int
    message: str = field(default="")
    dtype: str = field(default="float64")
    backend: str = field(default="cpu")
    restart_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    restarts_at_best: int = field(default=0)

    @property
    def weights(self) -> list:
        """[W_1, b_1, ..., W_out, b_out]; W_l has shape (out, in) as torch.nn.Linear.weight."""
        return split_params(self.params, self.d, self.hidden)

    @property
    def n_params(self) -> int:
        """The number of network parameters (weights and biases)."""
        return int(self.params.shape[0])

    def predict(self, x, threads=None) -> np.ndarray:
        """f(x) at events x, shape (n, d) or (n,) for one feature."""
        x = _checks.as_events(x, "x", d=self.d)
        return _core.mlp_predict(x, list(self.hidden), self.params, _checks.threads_arg(threads))

    def __repr__(self) -> str:
        arch = "-".join(str(n) for n in (self.d, *self.hidden, 1))
        return (f"NeuralFitResult(t={self.t:.6g}, network={arch}, n_params={self.n_params}, clip={self.clip:g}, "
                f"optimizer={self.optimizer!r}, epochs_done={self.epochs_done}, converged={self.converged}, "
                f"seconds={self.seconds:.3g})")


class NeuralNPLM:
    """Neural NPLM estimator (D'Agnolo & Wulzer 2019) on the compiled core.

    Parameters
    ----------
    hidden : sequence of int
        Hidden layer widths (sigmoid units); (4,) gives the 1-d-4-1 network of the 1D toy.
    clip : float
        Weight clipping W > 0: after every update each weight and bias is clipped to [-W, W].
    epochs : int
        Full-batch Adam updates (L-BFGS-B: the iteration limit; Newton: the limit of steps per
        start).
    lr : float
        Adam learning rate.
    seed : int
        Seed of the initialisation (see the module docstring for the exact recipe).
    threads : int or None
        CPU threads (None: all cores). Results do not depend on it.
    optimizer : {"adam", "lbfgsb", "newton"}
        "adam": the published training (Adam + clipping, ``epochs`` updates). "lbfgsb": scipy's
        L-BFGS-B on the same loss and gradient (from the core) under the box abs(theta) <= clip,
        run to convergence -- the clipped model's maximum-likelihood fit. "newton": the same fit
        by a second-order method on the core's exact Hessian (``_core.mlp_loss_grad_hess``):
        a trust region with an active set, run until the projected gradient is within
        ``newton_tol`` (fastnplm/models/_newton.py), from ``restarts`` starts, the best kept;
        CPU and float64 only.
    history_every : int
        Record L every this many updates (0: never).
    beta1, beta2, eps : float
        Adam's moment decays and epsilon (torch's defaults).
    dtype : {"float64", "float32"}
        Arithmetic of the pass over the events. "float32" computes features, activations and
        exps in float (twice the SIMD lanes: ~2x faster per epoch) while loss and gradient
        sums, parameters and Adam stay in double; every per-event term then carries float
        rounding (~1e-7 relative), so L and its gradient differ from float64 by ~1e-7 of
        sum of abs(terms) (tests/python/test_neural.py derives the bound), and e^f overflows beyond
        f = 88. Adam trajectories of the two modes drift apart slowly; t agrees to the
        precision the fit itself has.
    backend : {"cpu", "auto", "cuda"}
        Where the epochs run. "cpu" (default); "auto": CUDA when
        :func:`fastnplm.cuda_available`, else the CPU; "cuda": every epoch (pass over the
        events, Adam, clip) on the device, in either dtype, RuntimeError at ``fit`` without a
        device. The training loop is the same code on both backends; the CUDA epoch matches
        the CPU's step for step in the emulation tests (float64: 1e-10 after 40 epochs;
        float32: the pass within a derived float-rounding bound, parameters within 1e-7 after
        40 epochs). It has not yet run on a GPU, hence the "cpu" default. L-BFGS-B and
        nuisance fits take their loss and gradient from the chosen backend.
    restarts : int or None
        Newton only: starts, the first from the initialisation of ``seed``, start r > 0 from
        that of ``restart_seed(seed, r)`` (fastnplm/models/_newton.py); the lowest final loss
        is kept. None: ``NEWTON_RESTARTS`` for Newton, 1 otherwise.
    newton_tol : float
        Newton only: stop when max|P(theta - grad L) - theta| <= newton_tol (P: the clip to the
        box). The gradient is a sum over events of order N_D; 1e-6 is far above its rounding
        (~1e-16 of the sum of its terms' sizes) and leaves a loss ~tol^2 / (2 lambda) above the
        minimum along a direction of curvature lambda: nothing t can show.
    coarse : bool
        Newton only: when the reference is much larger than the data (k = N_R // max(10 N_D,
        20000) >= 2), each start first runs on every k-th reference event, weights times k, to
        a projected gradient of 1e-3, and only then on the full sample to ``newton_tol``. The
        long nonconvex part of the path then costs ~1/k of the passes' time; the result is
        still a point meeting ``newton_tol`` on the full sample (docs/neural.md has the study).
        False: the full sample throughout.
    """

    def __init__(self, hidden=(4,), clip=9.0, epochs=300000, lr=1e-3, seed=0, threads=None, optimizer="adam",
                 history_every=1000, beta1=0.9, beta2=0.999, eps=1e-8, dtype="float64", backend="cpu",
                 restarts=None, newton_tol=1e-6, coarse=True):
        self.hidden = _hidden_arg(hidden)
        self.clip = _checks.positive_number(clip, "clip")
        self.epochs = _checks.positive_int(epochs, "epochs")
        self.lr = _checks.positive_number(lr, "lr")
        self.seed = _seed_arg(seed)
        self.threads = _checks.threads_arg(threads)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}: expected one of {OPTIMIZERS}")
        self.optimizer = optimizer
        if isinstance(history_every, bool) or not isinstance(history_every, numbers.Integral) or history_every < 0:
            raise ValueError(f"history_every must be an integer >= 0, got {history_every!r}")
        self.history_every = int(history_every)
        self.beta1 = _unit_interval(beta1, "beta1")
        self.beta2 = _unit_interval(beta2, "beta2")
        self.eps = _checks.positive_number(eps, "eps")
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}: expected one of {DTYPES}")
        self.dtype = dtype
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
        self.backend = backend
        if restarts is None:
            restarts = NEWTON_RESTARTS if optimizer == "newton" else 1
        self.restarts = _checks.positive_int(restarts, "restarts")
        self.newton_tol = _checks.positive_number(newton_tol, "newton_tol")
        if not isinstance(coarse, (bool, np.bool_)):
            raise TypeError(f"coarse must be True or False, got {coarse!r}")
        self.coarse = bool(coarse)
        if optimizer != "newton" and self.restarts != 1:
            raise ValueError(f"restarts is for optimizer='newton' (got restarts={restarts} with {optimizer!r})")
        if optimizer == "newton" and (dtype != "float64" or backend == "cuda"):
            raise ValueError("optimizer='newton' runs its Hessian pass on the CPU in float64: use dtype='float64' "
                             f"and backend 'cpu' or 'auto' (got dtype={dtype!r}, backend={backend!r})")

    def resolved_backend(self) -> str:
        """The backend a fit runs on now: 'cpu' or 'cuda' (auto: CUDA when available)."""
        return resolve_backend(self.backend)

    def n_params(self, d: int) -> int:
        """Trainable parameters of the network on d input features."""
        return int(_core.mlp_n_params(int(d), list(self.hidden)))

    def init_params(self, d: int, seed=None) -> np.ndarray:
        """The initial parameters (flat) for d features and ``seed`` (default: the model's)."""
        s = self.seed if seed is None else _seed_arg(seed)
        return _core.mlp_init(int(d), list(self.hidden), s, self.clip)

    def fit(self, reference, data, reference_weights=None, n_expected=None, nuisances=None, auxiliary=None,
            checkpoint=None, checkpoint_every=None):
        """Train the network on reference vs data and return t with the fitted model.

        Parameters
        ----------
        reference : array_like, (N_R, d) or (N_R,)
            Reference sample (converted to float64).
        data : array_like, (N_D, d) or (N_D,)
            Observed data.
        reference_weights : float or array_like (N_R,) or None
            Per-event weights summing to N(R); a scalar gives every event that weight.
        n_expected : float or None
            N(R) when no weights are given: every weight is N(R)/N_R (default N(R) = N_D).
        nuisances, auxiliary
            As for KernelNPLM.fit: returns a NuisanceFitResult (tau, Delta, t, the pulls).
        checkpoint : str or path-like or None
            Adam only: a file (``.npz``) that holds the training's state -- parameters, Adam's
            moments and step count, loss history -- rewritten atomically every
            ``checkpoint_every`` epochs. A fit killed midway and started again with the same
            inputs and settings continues from the last state written and ends with the same
            bits as an uninterrupted fit; a finished one returns at once. A file written for
            other inputs or settings is refused (ValueError).
        checkpoint_every : int or None
            Epochs between checkpoints (default: the multiple of ``history_every`` nearest
            above 10000); a multiple of ``history_every``.
        """
        if nuisances is not None:  # tau, Delta and t (fastnplm.models.nuisance.fit_neural_with_nuisances)
            from .nuisance import fit_neural_with_nuisances
            ref = _checks.as_events(reference, "reference")
            dat = _checks.as_events(data, "data", d=ref.shape[1])
            w = _checks.reference_weights(reference_weights, n_expected, ref.shape[0], dat.shape[0])
            return fit_neural_with_nuisances(self, ref, dat, w, nuisances, auxiliary)
        if auxiliary is not None:
            raise ValueError("auxiliary values without nuisances")
        if checkpoint is None and checkpoint_every is not None:
            raise ValueError("checkpoint_every without checkpoint")
        if checkpoint is not None:
            if self.optimizer != "adam":
                raise ValueError("checkpoint is for optimizer='adam' (L-BFGS-B runs to convergence in one call)")
            checkpoint = _Checkpoint(checkpoint, self._checkpoint_every(checkpoint_every))
        return self.fit_batch(reference, [data], reference_weights, n_expected, _checkpoint=checkpoint)[0]

    def _checkpoint_every(self, every) -> int:
        h = self.history_every
        if every is None:
            return CHECKPOINT_EPOCHS if h == 0 else h * -(-CHECKPOINT_EPOCHS // h)
        every = _checks.positive_int(every, "checkpoint_every")
        if h and every % h:
            raise ValueError(f"checkpoint_every ({every}) must be a multiple of history_every ({h})")
        return every

    def fit_batch(self, reference, datasets, reference_weights=None, n_expected=None, seeds=None,
                  _checkpoint=None) -> list:
        """Train one network per data set, the reference shared, in one call of the core.

        Network k starts from ``seeds[k]`` (default: the model's seed for all); its result
        depends on (datasets[k], seeds[k]) only -- not on the other data sets, their number or
        the thread count. With neither ``reference_weights`` nor ``n_expected``, data set k
        uses N(R) = its own size (data sets of different sizes then go in separate calls).

        Returns
        -------
        list of NeuralFitResult, one per data set.
        """
        start = time.perf_counter()
        ref = _checks.as_events(reference, "reference")
        if isinstance(datasets, np.ndarray) or not hasattr(datasets, "__len__"):
            raise TypeError("datasets must be a list of arrays (one data set per network)")
        if len(datasets) == 0:
            raise ValueError("datasets is empty: give at least one data set")
        dats = [_checks.as_events(x, f"datasets[{k}]", d=ref.shape[1]) for k, x in enumerate(datasets)]
        if seeds is None:
            seeds = [self.seed] * len(dats)
        elif len(seeds) != len(dats):
            raise ValueError(f"seeds has {len(seeds)} entries for {len(dats)} data sets")
        seeds = [_seed_arg(s, f"seeds[{k}]") for k, s in enumerate(seeds)]
        n_r, d = ref.shape
        backend = self.resolved_backend()  # raises before any work when "cuda" has no device
        # data sets sharing the same reference weights go through the core together
        groups: dict = {}
        if reference_weights is None and n_expected is None:
            for k, x in enumerate(dats):
                groups.setdefault(x.shape[0], []).append(k)
            weights = {n: _checks.reference_weights(None, None, n_r, n) for n in groups}
        else:
            w = _checks.reference_weights(reference_weights, n_expected, n_r, dats[0].shape[0])
            groups[None] = list(range(len(dats)))
            weights = {None: w}
        results: list = [None] * len(dats)
        for key, idx in groups.items():
            w = weights[key]
            init = np.stack([self.init_params(d, seeds[k]) for k in idx])
            if self.optimizer == "adam":
                outs = self.train_adam(ref, w, [dats[k] for k in idx], init, checkpoint=_checkpoint)
            elif self.optimizer == "newton":
                outs = self.train_newton(ref, w, [dats[k] for k in idx], init, [seeds[k] for k in idx])
            else:
                outs = self._lbfgsb(ref, w, [dats[k] for k in idx], init)
            for k, out in zip(idx, outs):
                results[k] = NeuralFitResult(
                    t=-2.0 * out["loss"], loss=out["loss"], params=out["params"], d=d, hidden=self.hidden,
                    clip=self.clip, optimizer=self.optimizer, epochs=self.epochs, epochs_done=out["epochs_done"],
                    converged=out["converged"], loss_history=out["history"], history_every=self.history_every,
                    seed=seeds[k], seconds=0.0, n_reference=n_r, n_data=dats[k].shape[0],
                    n_expected=float(w.sum()), threads=self.threads or _core.default_threads(),
                    message=out.get("message", ""), dtype=self.dtype, backend=out.get("backend", backend),
                    restart_losses=out.get("restart_losses", np.zeros(0)),
                    restarts_at_best=out.get("restarts_at_best", 0))
        seconds = time.perf_counter() - start
        for r in results:
            r.seconds = seconds
            if not r.converged:
                log.warning("neural fit did not converge: %r %s", r, r.message)
        return results

    def train_adam(self, reference, weights, datasets, init, epochs=None, checkpoint=None) -> list:
        """Train one network per dataset with the model's Adam settings, from given parameters.

        The training step of :meth:`fit_batch`, for fits that change the reference weights
        between rounds (the nuisance fits): no input checks, no result objects.

        Parameters
        ----------
        reference : (N_R, d) float64 array
        weights : (N_R,) reference weights, shared by every network
        datasets : list of (N_D, d) float64 arrays
        init : (len(datasets), n_params) array
            Initial parameters.
        epochs : int or None
            Adam updates (default the model's ``epochs``).
        checkpoint : internal checkpoint object or None
            Save Adam's state every few epochs and resume from it.

        Returns
        -------
        list of dict
            Per network: loss, params, history, converged, epochs_done, message.
        """
        ref, w, dats = reference, weights, datasets
        epochs = self.epochs if epochs is None else int(epochs)
        if checkpoint is not None:
            out = self._adam_checkpointed(ref, w, dats, init, checkpoint, epochs)
        else:
            out = _core.mlp_train(ref, w, dats, list(self.hidden), init, self.clip, self.lr, self.beta1, self.beta2,
                                  self.eps, epochs, self.history_every, self.threads, self.dtype,
                                  self.resolved_backend())
        return [dict(loss=float(out.loss[i]), params=out.params[i].copy(), history=out.history[i].copy(),
                     converged=bool(out.finite[i]), epochs_done=int(out.epochs_done[i]),
                     message="" if out.finite[i] else "the loss or gradient became NaN/inf")
                for i in range(len(dats))]

    def _adam_checkpointed(self, ref, w, dats, init, ck, epochs):
        """The Adam training in chunks of ck.every epochs, the state saved after each; the same
        updates as one call (the core continues Adam's bias corrections and moments)."""
        backend = self.resolved_backend()
        settings = dict(hidden=list(self.hidden), clip=self.clip, lr=self.lr, beta1=self.beta1, beta2=self.beta2,
                        eps=self.eps, epochs=epochs, history_every=self.history_every, dtype=self.dtype,
                        backend=backend, every=ck.every)
        key = _fingerprint(settings, ref, w, *dats, init)
        state = ck.load(key)
        if state is None:
            state = dict(params=init.copy(), m=None, v=None, steps=0, history=None, finite=np.ones(len(dats), bool),
                         loss=np.full(len(dats), np.nan))
        h = self.history_every
        while state["steps"] < epochs and state["finite"].all():
            n = min(ck.every, epochs - state["steps"])
            out = _core.mlp_train(ref, w, dats, list(self.hidden), state["params"], self.clip, self.lr, self.beta1,
                                  self.beta2, self.eps, n, h, self.threads, self.dtype, backend, state["steps"],
                                  state["m"], state["v"])
            hist = out.history if state["history"] is None else np.concatenate(
                [state["history"], out.history[:, 1:]], axis=1)  # a chunk's first entry ends the one before
            state = dict(params=out.params, m=out.m, v=out.v, steps=state["steps"] + n, history=hist,
                         finite=out.finite, loss=out.loss,
                         done=out.epochs_done + (state.get("done", 0)))
            ck.save(key, state)
        done = state.get("done", np.zeros(len(dats), np.int64))
        hist = state["history"] if state["history"] is not None else np.zeros((len(dats), 0))
        return SimpleNamespace(params=state["params"], loss=state["loss"], history=hist, finite=state["finite"],
                               epochs_done=done)

    def _lbfgsb(self, ref, w, dats, init):
        from scipy.optimize import minimize

        hidden = list(self.hidden)
        backend = self.resolved_backend()
        outs = []
        for x, p0 in zip(dats, init):
            history = []

            def fun(p, x=x):
                loss, grad = _core.mlp_loss_grad(ref, w, [x], hidden, p.reshape(1, -1), True, self.threads,
                                                 self.dtype, backend)
                return float(loss[0]), grad[0]

            res = minimize(fun, p0, jac=True, method="L-BFGS-B", bounds=[(-self.clip, self.clip)] * p0.shape[0],
                           callback=lambda intermediate_result: history.append(  # noqa: B023 (this iteration's)
                               float(intermediate_result.fun)),
                           options=dict(maxiter=self.epochs, maxfun=10 * self.epochs, ftol=1e-12, gtol=1e-7,
                                        maxcor=20))
            loss = float(_core.mlp_loss_grad(ref, w, [x], hidden, res.x.reshape(1, -1), False, self.threads,
                                             self.dtype, backend)[0][0])
            outs.append(dict(loss=loss, params=np.asarray(res.x, dtype=np.float64), history=np.asarray(history),
                             converged=bool(res.success and np.isfinite(loss)), epochs_done=int(res.nit),
                             message=str(res.message)))
        return outs

    def train_newton(self, reference, weights, datasets, init, seeds, restarts=None, coarse=None) -> list:
        """Newton fits (fastnplm/models/_newton.py) of each data set from ``restarts`` starts.

        Start 0 of data set k begins at ``init[k]``, start r > 0 at the initialisation of
        ``restart_seed(seeds[k], r)``; the lowest final loss is kept. ``restarts`` and ``coarse``
        default to the model's. All starts of all data sets are tasks shared by ``threads``
        workers, each start on its share of the threads (the core's passes and subproblems
        release the GIL): a start's result does not depend on its thread count or on the other
        tasks, so neither does the fit.

        Returns
        -------
        list of dict, one per data set: loss, params, history, epochs_done (steps, both stages),
        converged, message, restart_losses, restarts_at_best, backend.
        """
        from concurrent.futures import ThreadPoolExecutor

        ref, w = reference, weights
        restarts = self.restarts if restarts is None else _checks.positive_int(restarts, "restarts")
        coarse = self.coarse if coarse is None else bool(coarse)
        hidden = list(self.hidden)
        threads = self.threads or _core.default_threads()
        tasks = [(i, r) for i in range(len(datasets)) for r in range(restarts)]
        workers = min(len(tasks), threads)
        # the coarse stage of data set i runs on 1 in ks[i] reference events (weights times k)
        ks = [ref.shape[0] // max(COARSE_PER_DATA * x.shape[0], COARSE_MIN) if coarse else 1 for x in datasets]
        samples = {k: (np.ascontiguousarray(ref[::k]), w[::k] * k) for k in set(ks) if k >= 2}

        def stage(x, rs, ws, p, tol, nt):
            noise = 1e-13 * (float(ws.sum()) + x.shape[0])  # the rounding of L: ~1e-16 of ~1000 terms' sum

            def fun(q):
                return _core.mlp_loss_grad_hess(rs, ws, x, hidden, q, nt)

            def loss(q):
                return _core.mlp_loss_grad_hess(rs, ws, x, hidden, q, nt, False, False)[0]

            return projected_newton(fun, loss, p, self.clip, tol, self.epochs, noise)

        def start(j):
            i, r = tasks[j]
            x = datasets[i]
            nt = threads // workers + (1 if j % workers < threads % workers else 0)
            p_start = init[i] if r == 0 else self.init_params(ref.shape[1], restart_seed(seeds[i], r))
            k = ks[i]
            if k < 2:
                return stage(x, ref, w, p_start, self.newton_tol, nt)
            ref_c, w_c = samples[k]
            first = stage(x, ref_c, w_c, p_start, max(COARSE_TOL, self.newton_tol), nt)
            run = stage(x, ref, w, first["x"], self.newton_tol, nt)
            run["message"] = (f"{first['iterations']} coarse steps (1 in {k} reference events), "
                              f"{run['iterations']} on the full sample: {run['message']}")
            run["iterations"] += first["iterations"]
            return run

        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                done = list(pool.map(start, range(len(tasks))))
        else:
            done = [start(j) for j in range(len(tasks))]
        outs = []
        for i, x in enumerate(datasets):
            runs = done[i * restarts:(i + 1) * restarts]
            losses = np.array([run["loss"] if np.isfinite(run["loss"]) else np.inf for run in runs])
            best = int(np.argmin(losses))
            run = runs[best]
            at_best = int(np.sum(losses - losses[best] <= RESTART_AGREEMENT))
            # t from the pass the other optimizers report (mlp_loss_grad): the same L to ~1e-13
            final = float(_core.mlp_loss_grad(ref, w, [x], hidden, run["x"].reshape(1, -1), False, self.threads)[0][0])
            message = (f"start {best + 1} of {restarts} best ({at_best} within {RESTART_AGREEMENT:g} of it): "
                       f"{run['message']}")
            outs.append(dict(loss=final, params=run["x"], history=run["history"], epochs_done=run["iterations"],
                             converged=bool(run["converged"] and np.isfinite(final)), message=message,
                             restart_losses=losses, restarts_at_best=at_best, backend="cpu"))
        return outs


def _fingerprint(settings: dict, *arrays) -> str:
    """sha256 of a training's settings and input arrays: a checkpoint belongs to exactly one."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class _Checkpoint:
    """A neural fit's state in one .npz file, replaced atomically (written beside it, fsynced,
    renamed), so a kill at any moment leaves the previous state or the new one."""

    KEYS = ("params", "m", "v", "history", "finite", "loss", "done")

    def __init__(self, path, every):
        self.path, self.every = os.fspath(path), int(every)
        if not self.path.endswith(".npz"):
            self.path += ".npz"

    def load(self, key):
        if not os.path.exists(self.path):
            return None
        try:
            with np.load(self.path) as z:
                written_for = str(z["key"])
                state = {k: z[k] for k in self.KEYS}
                state["steps"] = int(z["steps"])
        except (OSError, KeyError, EOFError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"checkpoint {self.path!r} is not a readable neural-fit checkpoint ({err}); remove it "
                             "to start again") from err
        if written_for != key:
            raise ValueError(f"checkpoint {self.path!r} was written for other inputs or settings; remove it or give "
                             "another path")
        return state

    def save(self, key, state):
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            np.savez(f, key=np.array(key), steps=np.array(state["steps"]), **{k: state[k] for k in self.KEYS})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
