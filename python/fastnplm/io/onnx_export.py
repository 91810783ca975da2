"""ONNX export of a fitted f(x), for software that runs ONNX models (``pip install
"fastnplm[onnx]"``).

The graph takes a float64 tensor ``x`` of shape (n, d) in the original feature space and
returns ``f`` of shape (n,): the stored preprocessing (x - shift) / scale, then

* kernel: f = exp(-gamma ||x - c||^2) alpha with ||x - c||^2 = |x|^2 - 2 x c^T + |c|^2
  (clamped at 0; the expansion costs one matrix product instead of an (n, M, d) tensor, and
  rounds the squared distance to ~1e-16 |x|^2 absolute -- negligible against 2 sigma^2);
* neural: the affine layers with sigmoids between them, linear output.

The fastnplm model file (:func:`fastnplm.save_model`) stays the exact, versioned format;
ONNX is the bridge to other runtimes.
"""
from __future__ import annotations

import os

import numpy as np

from .saved_model import as_saved_model

OPSET = 17


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ImportError('ONNX export needs the onnx package: pip install "fastnplm[onnx]"') from None
    return onnx, helper, numpy_helper


class GraphBuilder:
    """An ONNX graph under construction -- its nodes and float64 initialisers -- and how it is
    checked and written: the one way fastnplm builds ONNX models (f here, the embedder in
    fastnplm.embed)."""

    def __init__(self):
        self.onnx, self.helper, self.numpy_helper = _onnx()
        self.nodes: list = []
        self.inits: list = []

    def const(self, name, value) -> str:
        """A float64 initialiser; returns its name."""
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float64), name))
        return name

    def node(self, op, inputs, out, **attrs) -> str:
        """A node of one output; returns the output's name."""
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attrs))
        return out

    def save(self, path, name, inputs, outputs, doc=""):
        """Check the model and write it: ``inputs`` and ``outputs`` are (name, shape) of float64
        tensors. Returns the onnx.ModelProto."""
        helper, double = self.helper, self.onnx.TensorProto.DOUBLE
        graph = helper.make_graph(self.nodes, name, [helper.make_tensor_value_info(n, double, s) for n, s in inputs],
                                  [helper.make_tensor_value_info(n, double, s) for n, s in outputs], self.inits)
        model = helper.make_model(graph, producer_name="fastnplm", opset_imports=[helper.make_opsetid("", OPSET)])
        model.doc_string = doc
        self.onnx.checker.check_model(model)
        self.onnx.save(model, os.fspath(path))
        return model


def export_onnx(fit, path, preprocessing=None):
    """Writes f of a kernel or neural fit (or a SavedModel) as an ONNX model.

    Parameters
    ----------
    fit : KernelFitResult, NeuralFitResult or SavedModel
    path : str or os.PathLike
    preprocessing : Standardize, DivideByMean or (shift, scale), optional
        As in :func:`fastnplm.save_model` (ignored for a SavedModel, which carries its own).

    Returns
    -------
    onnx.ModelProto
    """
    g = GraphBuilder()
    const, node = g.const, g.node
    m = as_saved_model(fit, preprocessing)

    x = "x"
    if m.shift is not None:
        x = node("Sub", [x, const("shift", m.shift)], "x_shifted")
        x = node("Div", [x, const("scale", m.scale)], "x_pre")
    if m.kind == "kernel":
        gamma = 0.5 / m.sigma ** 2
        x2 = node("ReduceSumSquare", [x], "x2", axes=[1], keepdims=1)              # (n, 1)
        xc = node("MatMul", [x, const("centers_t", m.centers.T)], "xc")            # (n, M)
        c2 = const("c2", (m.centers ** 2).sum(1)[None, :])                          # (1, M)
        r = node("Sub", [node("Add", [x2, c2], "x2c2"), node("Mul", [xc, const("two", 2.0)], "xc2")], "d2_raw")
        r = node("Max", [r, const("zero", 0.0)], "d2")
        k = node("Exp", [node("Mul", [r, const("neg_gamma", -gamma)], "e")], "k")
        f = node("MatMul", [k, const("alpha", m.alpha[:, None])], "f2")
    else:
        a, off, nin = x, 0, m.d
        sizes = (*m.hidden, 1)
        for i, nout in enumerate(sizes):
            W = m.params[off:off + nin * nout].reshape(nout, nin)
            b = m.params[off + nin * nout:off + nin * nout + nout]
            off += nin * nout + nout
            z = node("Add", [node("MatMul", [a, const(f"W{i}_t", W.T)], f"xw{i}"), const(f"b{i}", b)], f"z{i}")
            a = node("Sigmoid", [z], f"h{i}") if i + 1 < len(sizes) else z
            nin = nout
        f = a
    g.inits.append(g.numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"))
    node("Reshape", [f, "flat"], "f")
    return g.save(path, f"fastnplm_{m.kind}", [("x", ["n", m.d])], [("f", ["n"])],
                  f"NPLM f(x), {m.kind} model; input: float64 (n, {m.d}) events in the original features")
