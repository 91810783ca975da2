#pragma once
// The Fortran BLAS/LAPACK routines the dense code calls. FASTNPLM_BLAS_PREFIX prepends a symbol
// prefix (scipy-openblas exports scipy_dpotrf_ and so on); it is empty for a system LAPACK.
// Character arguments are followed by their hidden Fortran lengths (gfortran ABI).
#include <cstddef>

#ifndef FASTNPLM_BLAS_PREFIX
#define FASTNPLM_BLAS_PREFIX
#endif
#define FASTNPLM_CAT2(a, b) a##b
#define FASTNPLM_CAT(a, b) FASTNPLM_CAT2(a, b)
#define FASTNPLM_F77(name) FASTNPLM_CAT(FASTNPLM_BLAS_PREFIX, name)

extern "C" {
void FASTNPLM_F77(dpotrf_)(const char* uplo, const int* n, double* a, const int* lda, int* info, std::size_t);
void FASTNPLM_F77(dpotrs_)(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda, double* b,
                           const int* ldb, int* info, std::size_t);
void FASTNPLM_F77(dsyev_)(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                          double* work, const int* lwork, int* info, std::size_t, std::size_t);
void FASTNPLM_F77(dlauum_)(const char* uplo, const int* n, double* a, const int* lda, int* info, std::size_t);
void FASTNPLM_F77(dtrsm_)(const char* side, const char* uplo, const char* transa, const char* diag, const int* m,
                          const int* n, const double* alpha, const double* a, const int* lda, double* b, const int* ldb,
                          std::size_t, std::size_t, std::size_t, std::size_t);
void FASTNPLM_F77(dtrmm_)(const char* side, const char* uplo, const char* transa, const char* diag, const int* m,
                          const int* n, const double* alpha, const double* a, const int* lda, double* b, const int* ldb,
                          std::size_t, std::size_t, std::size_t, std::size_t);
void FASTNPLM_F77(dgemm_)(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                          const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
                          const double* beta, double* c, const int* ldc, std::size_t, std::size_t);
void FASTNPLM_F77(dsyrk_)(const char* uplo, const char* trans, const int* n, const int* k, const double* alpha,
                          const double* a, const int* lda, const double* beta, double* c, const int* ldc, std::size_t,
                          std::size_t);
#ifdef FASTNPLM_OPENBLAS_THREADS_API
void FASTNPLM_F77(openblas_set_num_threads)(int);
#endif
}
