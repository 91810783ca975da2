"""Lazy imports of the optional dependencies, with an error that names the extra to install."""
from __future__ import annotations

import importlib

# module -> the fastnplm extra that installs it (pyproject.toml [project.optional-dependencies])
EXTRAS = {"uproot": "root", "awkward": "root", "h5py": "hdf5", "pyarrow": "parquet", "pyarrow.parquet": "parquet",
          "matplotlib": "plot", "dask": "dask", "torch": "embed", "onnx": "onnx"}


def require(module: str, purpose: str):
    """Import ``module`` or raise an ImportError saying which ``pip install`` provides it.

    Parameters
    ----------
    module : str
        Dotted module name (``"uproot"``, ``"pyarrow.parquet"``, ...).
    purpose : str
        What needed it, for the message (``"reading ROOT files"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = EXTRAS.get(module, "all")
        raise ImportError(f"{purpose} needs the optional package {module.split('.')[0]!r}, which is not "
                          f"installed: pip install 'fastnplm[{extra}]'") from err
