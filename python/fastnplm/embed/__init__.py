"""Learned embeddings for high-dimensional events, and NPLM in the embedding.

Kernel NPLM works in a handful of dimensions; events with dozens of features are first
mapped to a low-dimensional embedding learnt with a contrastive loss on labelled simulation
of the known processes (supervised contrastive, Khosla et al. 2020) or on augmented copies
of the events (SimCLR, Chen et al. 2020), and NPLM then tests the embedded data against the
embedded reference (Metzger et al., arXiv:2502.15926). :class:`Embedder` learns the map,
:class:`PCA` is the linear baseline of the same dimension, and :class:`Pipeline` chains the
preprocessing, the frozen embedder and an NPLM model (calibration, fit, test, report,
monitoring on the original events).

Needs PyTorch: ``pip install "fastnplm[embed]"``.
"""
from __future__ import annotations

from .._optional import require

require("torch", "fastnplm.embed (learned embeddings)")

from .embedder import PCA, Embedder  # noqa: E402
from .losses import simclr_loss, supcon_loss  # noqa: E402
from .pipeline import EmbeddedMonitor, Pipeline  # noqa: E402

__all__ = ["EmbeddedMonitor", "Embedder", "PCA", "Pipeline", "simclr_loss", "supcon_loss"]
