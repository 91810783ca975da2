// Dense M x M work: factorisations through LAPACK (Fortran interface, blas_names.hpp), vector sweeps here.
#include <cstddef>

#include "blas_names.hpp"
#include "dense.hpp"

#ifndef FASTNPLM_BLAS_NAME
#define FASTNPLM_BLAS_NAME "LAPACK"
#endif

namespace fastnplm::dense {

// OpenBLAS's own thread pool, synchronising inside dpotrf while the OpenMP workers of the
// kernel passes spin on the same cores, made a 100-center fit take 0.5 s instead of
// milliseconds. The factorisations are O(M^3) once per Newton step, next to O(n M) per CG
// iteration, so the private OpenBLAS copy runs them on one thread.
void single_threaded_blas() {
#ifdef FASTNPLM_OPENBLAS_THREADS_API
    static const bool once = [] {
        FASTNPLM_F77(openblas_set_num_threads)(1);
        return true;
    }();
    (void)once;
#endif
}

int cholesky_upper(double* a, int n) {
    single_threaded_blas();
    int info = 0;
    FASTNPLM_F77(dpotrf_)("U", &n, a, &n, &info, 1);
    return info;
}

void lauum_upper(double* u, int n) {
    single_threaded_blas();
    int info = 0;
    FASTNPLM_F77(dlauum_)("U", &n, u, &n, &info, 1);
}

// The O(M^2) vector work runs on our own loops, not BLAS-2: OpenBLAS may hand a trsv to
// its thread pool, whose threads then fight the OpenMP workers of the kernel passes for
// the same cores (measured: a 100-center fit went from 0.55 s to a few ms). Columns of
// the column-major factor are contiguous, so both forms are column sweeps.
void trsv_upper(const double* u, int n, bool trans, double* b) {
    const std::size_t ld = static_cast<std::size_t>(n);
    if (trans) {  // U^T x = b: forward, x_j = (b_j - U(:j, j) . x(:j)) / U(j, j)
        for (int j = 0; j < n; ++j) {
            const double* col = u + j * ld;
            double s = b[j];
            for (int i = 0; i < j; ++i) s -= col[i] * b[i];
            b[j] = s / col[j];
        }
    } else {  // U x = b: backward, then subtract column j times x_j
        for (int j = n - 1; j >= 0; --j) {
            const double* col = u + j * ld;
            const double xj = b[j] / col[j];
            b[j] = xj;
            for (int i = 0; i < j; ++i) b[i] -= col[i] * xj;
        }
    }
}

void trmv_upper(const double* u, int n, bool trans, double* x) {
    const std::size_t ld = static_cast<std::size_t>(n);
    if (trans) {  // y_j = U(:j+1, j) . x(:j+1), from the last j so inputs are read before overwritten
        for (int j = n - 1; j >= 0; --j) {
            const double* col = u + j * ld;
            double s = 0.0;
            for (int i = 0; i <= j; ++i) s += col[i] * x[i];
            x[j] = s;
        }
    } else {  // y = sum_j U(:, j) x_j, from the first j
        for (int j = 0; j < n; ++j) {
            const double* col = u + j * ld;
            const double xj = x[j];
            for (int i = 0; i < j; ++i) x[i] += col[i] * xj;
            x[j] = col[j] * xj;
        }
    }
}

const char* blas_name() { return FASTNPLM_BLAS_NAME; }

}  // namespace fastnplm::dense
