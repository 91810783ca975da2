// LAPACK/BLAS bindings (Fortran interface). FASTNPLM_BLAS_PREFIX prepends a symbol prefix
// (scipy-openblas exports scipy_dpotrf_ and so on); it is empty for a system LAPACK.
// Character arguments are followed by their hidden Fortran lengths (gfortran ABI).
#include <cstddef>

#include "dense.hpp"

#ifndef FASTNPLM_BLAS_PREFIX
#define FASTNPLM_BLAS_PREFIX
#endif
#ifndef FASTNPLM_BLAS_NAME
#define FASTNPLM_BLAS_NAME "LAPACK"
#endif
#define FASTNPLM_CAT2(a, b) a##b
#define FASTNPLM_CAT(a, b) FASTNPLM_CAT2(a, b)
#define FASTNPLM_F77(name) FASTNPLM_CAT(FASTNPLM_BLAS_PREFIX, name)

extern "C" {
void FASTNPLM_F77(dpotrf_)(const char* uplo, const int* n, double* a, const int* lda, int* info,
                           std::size_t);
void FASTNPLM_F77(dlauum_)(const char* uplo, const int* n, double* a, const int* lda, int* info,
                           std::size_t);
void FASTNPLM_F77(dtrsv_)(const char* uplo, const char* trans, const char* diag, const int* n,
                          const double* a, const int* lda, double* x, const int* incx, std::size_t,
                          std::size_t, std::size_t);
void FASTNPLM_F77(dtrmv_)(const char* uplo, const char* trans, const char* diag, const int* n,
                          const double* a, const int* lda, double* x, const int* incx, std::size_t,
                          std::size_t, std::size_t);
}

namespace fastnplm::dense {

int cholesky_upper(double* a, int n) {
    int info = 0;
    FASTNPLM_F77(dpotrf_)("U", &n, a, &n, &info, 1);
    return info;
}

void lauum_upper(double* u, int n) {
    int info = 0;
    FASTNPLM_F77(dlauum_)("U", &n, u, &n, &info, 1);
}

void trsv_upper(const double* u, int n, bool trans, double* b) {
    const int one = 1;
    FASTNPLM_F77(dtrsv_)("U", trans ? "T" : "N", "N", &n, u, &n, b, &one, 1, 1, 1);
}

void trmv_upper(const double* u, int n, bool trans, double* x) {
    const int one = 1;
    FASTNPLM_F77(dtrmv_)("U", trans ? "T" : "N", "N", &n, u, &n, x, &one, 1, 1, 1);
}

const char* blas_name() { return FASTNPLM_BLAS_NAME; }

}  // namespace fastnplm::dense
