"""Contrastive losses on embeddings, with cosine similarity and a temperature.

Both losses compare every event of a batch with every other through
``s_ij = cos(z_i, z_j) / temperature`` and, for an anchor i, the log-probability of a
"positive" p among all the other events a != i:

    log P(p | i) = s_ip - log sum_{a != i} exp(s_ia).

* Supervised contrastive (SupCon, Khosla et al. 2020, arXiv:2004.11362, eq. 2, the
  "L_out" form): the positives of i are the other events with the same label; the loss is
  the mean over anchors of -mean_{p in P(i)} log P(p | i). Anchors without a positive in
  the batch (the only event of their class) are left out of the mean.
* SimCLR's NT-Xent (Chen et al. 2020, arXiv:2002.05709, eq. 1): the batch holds two
  augmented views of n events; the only positive of a view is the other view of the same
  event; the loss is the mean over the 2n views of -log P(partner | view). It is SupCon
  with the event index as the label.
"""
from __future__ import annotations

import torch


def _check(z, temperature):
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        raise TypeError("embeddings must be a 2-D torch.Tensor (events, dimensions)")
    if z.shape[0] < 2:
        raise ValueError(f"a contrastive loss needs at least 2 events, got {z.shape[0]}")
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")


def _log_prob(z, temperature):
    """log P(j | i) for all pairs, with the diagonal (i = j) at -inf."""
    z = torch.nn.functional.normalize(z, dim=1)
    logits = z @ z.T / temperature
    self_pair = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pair, float("-inf"))
    return logits - torch.logsumexp(logits, dim=1, keepdim=True), self_pair


def supcon_loss(z, labels, temperature: float = 0.1):
    """Supervised contrastive loss of a batch (Khosla et al. 2020, eq. 2).

    Parameters
    ----------
    z : torch.Tensor (n, k)
        Embeddings (normalised here: the similarity is the cosine).
    labels : torch.Tensor (n,)
        Integer class of each event.
    temperature : float

    Returns
    -------
    torch.Tensor
        The scalar loss, mean over the anchors that have at least one positive.
    """
    _check(z, temperature)
    labels = torch.as_tensor(labels, device=z.device).reshape(-1)
    if labels.shape[0] != z.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries but there are {z.shape[0]} embeddings")
    log_prob, self_pair = _log_prob(z, temperature)
    positive = (labels[:, None] == labels[None, :]) & ~self_pair
    n_pos = positive.sum(dim=1)
    anchors = n_pos > 0
    if not bool(anchors.any()):
        raise ValueError("no event of the batch has a positive (every label appears once)")
    per_anchor = log_prob.masked_fill(~positive, 0.0).sum(dim=1)[anchors] / n_pos[anchors]
    return -per_anchor.mean()


def simclr_loss(z1, z2, temperature: float = 0.1):
    """SimCLR's NT-Xent loss of two views of a batch (Chen et al. 2020, eq. 1).

    Parameters
    ----------
    z1, z2 : torch.Tensor (n, k)
        Embeddings of the two augmented views; row i of each comes from event i.
    temperature : float

    Returns
    -------
    torch.Tensor
        The scalar loss, mean over the 2n views.
    """
    _check(z1, temperature)
    if not isinstance(z2, torch.Tensor) or z2.shape != z1.shape:
        raise ValueError(f"the two views must have the same shape, got {tuple(z1.shape)} and "
                         f"{tuple(getattr(z2, 'shape', ()))}")
    n = z1.shape[0]
    log_prob, _ = _log_prob(torch.cat([z1, z2]), temperature)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z1.device)
    return -log_prob[torch.arange(2 * n, device=z1.device), partner].mean()
