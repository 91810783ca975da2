"""What the compiled core was built with."""
from __future__ import annotations

from . import _core


def build_info() -> dict:
    """Build facts: version, LAPACK, default thread count, CUDA (not yet built)."""
    return {
        "version": _core.version,
        "blas": _core.blas_name(),
        "default_threads": _core.default_threads(),
        "cuda_built": cuda_built(),
    }


def cuda_built() -> bool:
    """Whether the CUDA backend was compiled in (it is not written yet: always False)."""
    return False


def cuda_available() -> bool:
    """Whether a CUDA device can be used now; False while the backend is not built."""
    return cuda_built()
