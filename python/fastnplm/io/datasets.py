"""Bundled problems: the 1-D toy of the NPLM papers and the CMS open-data dimuon events."""
from __future__ import annotations

import hashlib
import os

import numpy as np

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
# name -> (file in fastnplm/io/data, sha256); provenance and licence (CC0) in data/README.md
CMS_FILES = {
    "ymumu": ("cms2011A_Ymumu_record545.csv.gz", "ffa69cec3f239337464d6395aba923d288b0277d7e22fd31da11da73c3399013"),
    "zmumu": ("cms2011A_Zmumu_record545.csv.gz", "a33c7952586ef64a6aa5a2954bf48e53ef4ae486699630a9d427fb2347162726"),
    "doublemu": ("cms_doublemu_run2011a.csv", "00afc63c5de696247b46327bc9ac401498b060ec5399ad1f41045e2d2eee8eb6"),
}
CMS_FEATURES = ("pt1", "pt2", "eta1", "eta2", "dphi")


def exp_bump(seed=0, n_reference=200_000, n_expected=2000, n_signal=10, mean=6.4, width=0.16):
    """The 1-D benchmark of the NPLM papers: reference Exp(1), data = Poisson(n_expected)
    Exp(1) events plus ``n_signal`` events of a Gaussian bump N(mean, width).

    Returns ``(reference, data, n_expected)`` with arrays of shape (n, 1).
    """
    rng = np.random.default_rng(seed)
    reference = rng.exponential(size=(n_reference, 1))
    background = rng.exponential(size=(rng.poisson(n_expected), 1))
    signal = rng.normal(mean, width, size=(n_signal, 1))
    return reference, np.concatenate([background, signal]), float(n_expected)


def sha256_file(path, chunk=1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cms_dimuon_path(name="ymumu", verify=False) -> str:
    """Path of a bundled CMS open-data file (CC0; provenance in ``fastnplm/io/data/README.md``).

    Parameters
    ----------
    name : {"ymumu", "zmumu", "doublemu"}
    verify : bool
        Check the file's sha256 against the recorded one (ValueError on mismatch).
    """
    if name not in CMS_FILES:
        raise ValueError(f"unknown CMS sample {name!r}; bundled: {', '.join(CMS_FILES)}")
    fname, digest = CMS_FILES[name]
    path = os.path.join(DATA_DIR, fname)
    if verify and sha256_file(path) != digest:
        raise ValueError(f"{path} does not match its recorded sha256 {digest}: the bundled copy is damaged")
    return path


def dimuon_features(pt1, pt2, eta1, eta2, phi1, phi2):
    """NPLM features (pt1, pt2, eta1, eta2, delta-phi in [0, pi]) and the invariant mass.

    The mass treats the muons as massless: M^2 = 2 pt1 pt2 (cosh(eta1 - eta2) - cos(phi1 - phi2)).

    Returns
    -------
    features : ndarray (n, 5)
    mass : ndarray (n,)
    """
    dphi = np.abs(np.mod(phi1 - phi2 + np.pi, 2 * np.pi) - np.pi)
    mass = np.sqrt(np.maximum(2 * pt1 * pt2 * (np.cosh(eta1 - eta2) - np.cos(phi1 - phi2)), 0.0))
    return np.column_stack([pt1, pt2, eta1, eta2, dphi]), mass


def cms_dimuon(name="ymumu"):
    """The bundled CMS dimuon events as NPLM features.

    Returns
    -------
    features : ndarray (n, 5)
        pt1, pt2 (GeV), eta1, eta2, delta-phi (``CMS_FEATURES``).
    mass : ndarray (n,)
        Dimuon invariant mass (GeV), not a feature: it defines signal windows.
    """
    from .files import load

    cols = ["pt1", "pt2", "eta1", "eta2", "phi1", "phi2"]
    x = load(cms_dimuon_path(name), columns=cols)
    return dimuon_features(*x.T)
