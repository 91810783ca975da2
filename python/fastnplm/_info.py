"""What the compiled core was built with."""
from __future__ import annotations

from . import _core


def build_info() -> dict:
    """Build facts: version, LAPACK, default thread count, CUDA backend (does not probe the GPU)."""
    archs = _core.cuda_architectures()
    return {
        "version": _core.version,
        "blas": _core.blas_name(),
        "default_threads": _core.default_threads(),
        "cuda_built": cuda_built(),
        "cuda_architectures": [a for a in archs.split(";") if a],
        "cuda_kernels": list(_core.cuda_kernel_names()),
    }


def cuda_built() -> bool:
    """Whether the CUDA backend was compiled in (``FASTNPLM_CUDA`` at build time)."""
    return bool(_core.cuda_built())


def cuda_available() -> bool:
    """Whether a CUDA device can be used now.

    False when the backend is not built, without a driver, or without a device. The probe
    (``cudaGetDeviceCount``) runs on the first call, never at import.
    """
    return cuda_built() and bool(_core.cuda_device_available())


BACKENDS = ("auto", "cpu", "cuda")


def resolve_backend(backend: str) -> str:
    """'cpu' or 'cuda' for a user's ``backend=`` argument; raises before any heavy work.

    "auto" is "cuda" only when the backend is built and a device is present.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
    if backend == "auto":
        return "cuda" if cuda_available() else "cpu"
    if backend == "cuda" and not cuda_available():
        why = ("fastnplm was built without the CUDA backend" if not cuda_built()
               else "no CUDA device is available (no driver or no GPU)")
        raise RuntimeError(f"backend='cuda' requested but {why}; use backend='cpu' or 'auto'")
    return backend
