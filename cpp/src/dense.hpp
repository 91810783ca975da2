#pragma once
// Dense M x M linear algebra for the Nystrom preconditioner, through LAPACK/BLAS.
// Matrices are column-major, n x n, leading dimension n; "upper" means the factor U
// with A = U^T U is kept in the upper triangle (LAPACK's uplo = 'U').
#include <cstdint>

namespace fastnplm::dense {

/// Cholesky A = U^T U in place (upper triangle); returns LAPACK's info (0 on success).
int cholesky_upper(double* a, int n);

/// U <- U U^T in place for upper-triangular U (LAPACK dlauum).
void lauum_upper(double* u, int n);

/// The same two on `threads` threads, tiled (dense_tiled.cpp): the result does not depend on the
/// thread count (it differs from the one-call LAPACK result by rounding).
int cholesky_upper(double* a, int n, int threads);
void lauum_upper(double* u, int n, int threads);

/// Sets the private OpenBLAS to one thread (once); the tiled routines call BLAS from OpenMP threads.
void single_threaded_blas();

/// Solves U x = b (trans = false) or U^T x = b (trans = true) in place, U upper, b of length n.
void trsv_upper(const double* u, int n, bool trans, double* b);

/// x <- U x (trans = false) or U^T x (trans = true) in place, U upper.
void trmv_upper(const double* u, int n, bool trans, double* x);

/// Solves U X = B (trans = false) or U^T X = B (trans = true) in place for the columns of X
/// (n x ld, row-major, ld a multiple of 8; padding columns are solved too). Each column's result
/// is independent of the others and of the thread count (dense_lanes.cpp).
void trsm_upper_lanes(const double* u, int n, bool trans, double* x, std::int64_t ld, int threads);

/// Name of the BLAS/LAPACK the core was linked with.
const char* blas_name();

}  // namespace fastnplm::dense
