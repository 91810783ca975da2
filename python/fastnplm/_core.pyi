# Type stub of the compiled module, generated with pybind11-stubgen from the built extension
# (regenerate after changing python/src/*.cpp; tests/python/test_layout.py checks it is complete).
"""
fastnplm compiled core (CPU backend)
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['CudaDeviceFacts', 'CudaEventTimer', 'KernelFitResult', 'MlpTrainResult', 'NotPositiveDefiniteError', 'ResidentFeatures', 'SharedFitResult', 'SharedReference', 'avx512_lanes', 'blas_name', 'box_qp', 'cuda_architectures', 'cuda_built', 'cuda_device_available', 'cuda_device_facts', 'cuda_kernel_names', 'default_threads', 'feature_gram', 'feature_project', 'features_expm1_sum', 'features_gram', 'fit_kernel', 'kernel_fused', 'kernel_gram_mm', 'kernel_matrix', 'kernel_mm_expm1_sum', 'kernel_mv', 'kernel_tmv', 'mlp_exp_floor_ms', 'mlp_float32_lanes', 'mlp_init', 'mlp_loss_grad', 'mlp_loss_grad_hess', 'mlp_n_params', 'mlp_predict', 'mlp_train', 'version']
class NotPositiveDefiniteError(ValueError):
    pass
class KernelFitResult:
    """
    A kernel NPLM fit (fastnplm/kernel_nplm.hpp).
    """
    def __repr__(self) -> str:
        """
        The scalars, and the shapes of the arrays.
        """
    def to_dict(self) -> dict:
        """
        The attributes as a dict (the arrays are the same views).
        """
    @property
    def alpha(self) -> numpy.ndarray:
        """
        (M,) coefficients
        """
    @property
    def cg_iterations(self) -> list[int]:
        """
        CG iterations of each Newton step
        """
    @property
    def cg_residuals(self) -> list[float]:
        """
        final preconditioned residual norm of each Newton step
        """
    @property
    def converged(self) -> bool:
        """
        every CG solve met cg_tol (and, Newton, the gradient met grad_tol)
        """
    @property
    def f_data(self) -> numpy.ndarray:
        """
        (N_D,) f at the data events
        """
    @property
    def f_reference(self) -> numpy.ndarray:
        """
        (N_R,) f at the reference events
        """
    @property
    def grad_norm(self) -> float:
        """
        Newton solver: ||dJ/dbeta|| at the fit; NaN for newton-step
        """
    @property
    def newton_iterations(self) -> int:
        """
        Newton steps taken
        """
    @property
    def objective(self) -> float:
        """
        J at the fitted alpha
        """
    @property
    def t(self) -> float:
        """
        2 [sum_D f - sum_R w (e^f - 1)]
        """
class SharedFitResult:
    """
    One dataset's fit against a SharedReference.
    """
    def __repr__(self) -> str:
        """
        The scalars, and the shapes of the arrays.
        """
    def to_dict(self) -> dict:
        """
        The attributes as a dict (the arrays are the same views).
        """
    @property
    def alpha(self) -> numpy.ndarray:
        """
        (M,) coefficients
        """
    @property
    def beta_sq(self) -> float:
        """
        alpha^T (K_MM + eps M I) alpha: the penalty is lam/2 of it
        """
    @property
    def cg_iterations(self) -> int:
        """
        CG iterations
        """
    @property
    def cg_residual(self) -> float:
        """
        final preconditioned residual norm
        """
    @property
    def converged(self) -> bool:
        """
        CG met cg_tol
        """
    @property
    def f_data(self) -> numpy.ndarray:
        """
        (N_D,) f at the data events
        """
    @property
    def t(self) -> float:
        """
        2 [sum_D f - sum_R w (e^f - 1)]
        """
class ResidentFeatures:
    """
    Feature rows F (n, r) and weights w kept in a backend's memory (device memory on CUDA) for repeated sum_i w_i expm1((F @ V)[i]).
    """
    def __init__(self, F: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], w: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex = 0, backend: str = 'cpu') -> None:
        ...
    def expm1_sum(self, V: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
        """
        sum_i w_i expm1((F @ V)[i]) per column of V; as features_expm1_sum on the same backend.
        """
class SharedReference:
    """
    Newton-step fits of many datasets against one reference, sharing the reference's work (kernel_shared.hpp).
    """
    def __init__(self, reference: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], weights: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], centers: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], center_scale: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None, sigma: typing.SupportsFloat | typing.SupportsIndex, lam: typing.SupportsFloat | typing.SupportsIndex, cg_tol: typing.SupportsFloat | typing.SupportsIndex, max_iter: typing.SupportsInt | typing.SupportsIndex, pc_epsilon: typing.SupportsFloat | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    def fit(self, datasets: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64]]) -> list[SharedFitResult]:
        """
        One SharedFitResult per dataset, all solved together.
        """
    @property
    def n0(self) -> float:
        """
        N_R + sum(w): the size the preconditioner is built for.
        """
class MlpTrainResult:
    """
    What mlp_train returns for B networks of P parameters.
    """
    def __repr__(self) -> str:
        """
        The scalars, and the shapes of the arrays.
        """
    def to_dict(self) -> dict:
        """
        The attributes as a dict (the arrays are the same views).
        """
    @property
    def epochs_done(self) -> numpy.ndarray:
        """
        (B) updates made in this call
        """
    @property
    def finite(self) -> numpy.ndarray:
        """
        (B) training finished without a non-finite loss
        """
    @property
    def history(self) -> numpy.ndarray:
        """
        (B, n_history) L after 0, h, 2h, ... updates of this call (h = history_every)
        """
    @property
    def loss(self) -> numpy.ndarray:
        """
        (B) L after the last update (t = -2 L); NaN if not finite
        """
    @property
    def m(self) -> numpy.ndarray:
        """
        (B, P) Adam's first moments after the last update
        """
    @property
    def params(self) -> numpy.ndarray:
        """
        (B, P) the parameters after the last update
        """
    @property
    def steps(self) -> int:
        """
        Adam updates made in all, the steps to continue from
        """
    @property
    def v(self) -> numpy.ndarray:
        """
        (B, P) Adam's second moments after the last update
        """
class CudaDeviceFacts:
    """
    What bench/gpu.py puts achieved rates against.
    """
    def __repr__(self) -> str:
        """
        The scalars, and the shapes of the arrays.
        """
    def to_dict(self) -> dict:
        """
        The attributes as a dict (the arrays are the same views).
        """
    @property
    def bus_width_bits(self) -> float:
        """
        memory bus width
        """
    @property
    def clock_khz(self) -> float:
        """
        SM clock
        """
    @property
    def compute_capability(self) -> str:
        """
        major.minor
        """
    @property
    def global_memory_bytes(self) -> float:
        """
        device memory
        """
    @property
    def memory_clock_khz(self) -> float:
        """
        memory clock
        """
    @property
    def multiprocessors(self) -> int:
        """
        SMs
        """
    @property
    def name(self) -> str:
        """
        the device's name
        """
    @property
    def peak_bandwidth(self) -> float:
        """
        2 x memory clock x bus width / 8, bytes/s
        """
    @property
    def peak_fp64_flops(self) -> float:
        """
        SMs x FP64 FMA units per SM x 2 x clock
        """
class CudaEventTimer:
    """
    Device time by CUDA events on the default stream.
    """
    def __init__(self) -> None:
        ...
    def start(self) -> None:
        ...
    def stop(self) -> float:
        """
        Milliseconds since start() (waits for the device).
        """
def avx512_lanes() -> bool:
    """
    Whether this build runs 16-lane float32 code on this CPU.
    """
def blas_name() -> str:
    """
    The LAPACK/BLAS the core was built with.
    """
def box_qp(g: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], H: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], lo: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], hi: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], rtol: typing.SupportsFloat | typing.SupportsIndex) -> tuple:
    """
    Approximately minimise g.s + s.H.s / 2 over lo <= s <= hi by projected Newton (fastnplm/box_qp.hpp): (s, q(s)).
    """
def cuda_architectures() -> str:
    """
    CUDA architectures of the kernels ('' when not built).
    """
def cuda_built() -> bool:
    """
    Whether the CUDA backend was compiled in.
    """
def cuda_device_available() -> bool:
    """
    Whether a CUDA device can be used (probed on the first call, not at import).
    """
def cuda_device_facts(device: typing.SupportsInt | typing.SupportsIndex = 0) -> CudaDeviceFacts:
    """
    Facts and peak rates of a CUDA device (RuntimeError without one).
    """
def cuda_kernel_names() -> list[str]:
    """
    Names of the compiled-in CUDA kernels.
    """
def default_threads() -> int:
    """
    Threads used when threads=None.
    """
def feature_gram(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], centers: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], sigma: typing.SupportsFloat | typing.SupportsIndex, t_upper_T: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], w: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], u: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
    """
    With B = K(x, centers) @ inv(T), T upper (pass T.T in C order): (B.T @ diag(w) @ B, B.T @ u).
    """
def feature_project(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], centers: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], sigma: typing.SupportsFloat | typing.SupportsIndex, G: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], w: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None = None, u: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None = None, features: bool = True, threads: typing.SupportsInt | typing.SupportsIndex = 0, backend: str = 'cpu') -> tuple:
    """
    With F = K(x, centers) @ G in one pass: (F or None, F.T @ diag(w) @ F if w, F.T @ u if u).
    """
def features_expm1_sum(F: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], V: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], w: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex = 0, backend: str = 'cpu') -> numpy.typing.NDArray[numpy.float64]:
    """
    sum_i w_i expm1((F @ V)[i]) per column of V, summed in an order independent of V's width.
    """
def features_gram(F: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], w: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex = 0, backend: str = 'cpu') -> numpy.typing.NDArray[numpy.float64]:
    """
    F.T @ diag(w) @ F in a fixed summation order.
    """
def fit_kernel(reference: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], weights: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], data: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], centers: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], center_scale: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None, sigma: typing.SupportsFloat | typing.SupportsIndex, penalties: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], solver: str, cg_tol: typing.SupportsFloat | typing.SupportsIndex, max_iter: typing.SupportsInt | typing.SupportsIndex, grad_tol: typing.SupportsFloat | typing.SupportsIndex, max_newton: typing.SupportsInt | typing.SupportsIndex, pc_epsilon: typing.SupportsFloat | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex, dense_hessian_max_m: typing.SupportsInt | typing.SupportsIndex, backend: str = 'cpu') -> KernelFitResult:
    """
    Kernel NPLM fit on backend 'cpu', 'cuda' or 'auto'.
    """
def kernel_fused(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], centers: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], sigma: typing.SupportsFloat | typing.SupportsIndex, v: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], w: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.float64]:
    """
    K.T @ (w * (K @ v)), one kernel evaluation per pair.
    """
def kernel_gram_mm(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], centers: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], sigma: typing.SupportsFloat | typing.SupportsIndex, V: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], w: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.float64]:
    """
    K.T @ diag(w) @ K @ V, one kernel evaluation per pair.
    """
def kernel_matrix(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], centers: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], sigma: typing.SupportsFloat | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.float64]:
    """
    Dense Gaussian kernel block K(x, centers).
    """
def kernel_mm_expm1_sum(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], centers: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], sigma: typing.SupportsFloat | typing.SupportsIndex, V: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], w: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.float64]:
    """
    sum_i w_i expm1((K(x, centers) @ V)[i]) per column of V, without storing the products.
    """
def kernel_mv(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], centers: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], sigma: typing.SupportsFloat | typing.SupportsIndex, v: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.float64]:
    """
    K(x, centers) @ v without storing K.
    """
def kernel_tmv(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], centers: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], sigma: typing.SupportsFloat | typing.SupportsIndex, u: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.float64]:
    """
    K(x, centers).T @ u without storing K.
    """
def mlp_exp_floor_ms(n_events: typing.SupportsInt | typing.SupportsIndex, exps_per_event: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex = 0, repeats: typing.SupportsInt | typing.SupportsIndex = 20, lanes: typing.SupportsInt | typing.SupportsIndex = 8) -> float:
    """
    Benchmark floor: ms (best of repeats) of exps_per_event float32 sigmoid exps per event alone, in vectors of 8 or 16 (AVX-512) lanes.
    """
def mlp_float32_lanes(d: typing.SupportsInt | typing.SupportsIndex, hidden: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> int:
    """
    Lanes (8 or 16) of the float32 MLP pass of a d-hidden-1 network here (FASTNPLM_F32_LANES as now).
    """
def mlp_init(d: typing.SupportsInt | typing.SupportsIndex, hidden: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], seed: typing.SupportsInt | typing.SupportsIndex, clip: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.typing.NDArray[numpy.float64]:
    """
    Glorot-uniform weights from splitmix64(seed), zero biases, clipped to [-clip, clip] (clip > 0).
    """
def mlp_loss_grad(reference: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], weights: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], data: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64]], hidden: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], params: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], with_grad: bool = True, threads: typing.SupportsInt | typing.SupportsIndex = 0, dtype: str = 'float64', backend: str = 'cpu') -> tuple:
    """
    NPLM loss (B,) and gradient (B, P) of B networks params (B, P), data a list of B arrays.
    """
def mlp_loss_grad_hess(reference: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], weights: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], data: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], hidden: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], params: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex = 0, with_grad: bool = True, with_hess: bool = True) -> tuple:
    """
    NPLM loss, gradient (P,) and exact Hessian (P, P) of one network params (P,); grad/hess None when not asked for. Independent of threads bit for bit.
    """
def mlp_n_params(d: typing.SupportsInt | typing.SupportsIndex, hidden: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> int:
    """
    Number of parameters of a d-hidden...-1 network.
    """
def mlp_predict(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], hidden: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], params: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.float64]:
    """
    f(x) of one network.
    """
def mlp_train(reference: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], weights: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], data: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64]], hidden: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], params: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], clip: typing.SupportsFloat | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, epochs: typing.SupportsInt | typing.SupportsIndex, history_every: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex = 0, dtype: str = 'float64', backend: str = 'cpu', steps: typing.SupportsInt | typing.SupportsIndex = 0, m: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None = None, v: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None = None) -> MlpTrainResult:
    """
    Adam + clipping for B networks at once, continuing from Adam's state (steps, m, v) when given.
    """
version: str = '0.1.0'
