// Tiled Cholesky and U U^T for the M x M factors, on all threads and deterministic.
//
// The matrix is cut into kTile x kTile tiles (the last row and column of tiles narrower). Each
// tile operation is one call of the single-threaded BLAS/LAPACK on whole tiles, and every tile
// receives its updates in a fixed order (ascending k), so the result is the same for any number
// of threads: the threads only share out the independent tile operations of each step.
// Below kTiledMin the one LAPACK call is faster than the tiles' synchronisation.
#include <algorithm>
#include <cstddef>

#include "blas_names.hpp"
#include "dense.hpp"

namespace fastnplm::dense {
namespace {

constexpr int kTile = 256;
constexpr int kTiledMin = 1024;

struct Tiles {
    double* a;
    int n, nt;
    double* at(int i, int j) const {
        return a + static_cast<std::size_t>(j) * kTile * n + static_cast<std::size_t>(i) * kTile;
    }
    int size(int i) const { return std::min(kTile, n - i * kTile); }
};

}  // namespace

int cholesky_upper(double* a, int n, int threads) {
    single_threaded_blas();
    if (n < kTiledMin) return cholesky_upper(a, n);
    const Tiles t{a, n, (n + kTile - 1) / kTile};
    const double one = 1.0, minus = -1.0;
    int failed = 0;
    for (int k = 0; k < t.nt; ++k) {
        const int nk = t.size(k);
        int info = 0;
        FASTNPLM_F77(dpotrf_)("U", &nk, t.at(k, k), &n, &info, 1);
        if (info != 0) {
            failed = k * kTile + info;
            break;
        }
        // row k of tiles: U_kj = U_kk^-T A_kj
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int j = k + 1; j < t.nt; ++j) {
            const int nj = t.size(j);
            FASTNPLM_F77(dtrsm_)("L", "U", "T", "N", &nk, &nj, &one, t.at(k, k), &n, t.at(k, j), &n, 1, 1, 1, 1);
        }
        // trailing tiles (i <= j): A_ij -= U_ki^T U_kj
        const int rest = t.nt - k - 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int p = 0; p < rest * (rest + 1) / 2; ++p) {
            int j = 0;  // p enumerates (i, j) column by column: j's column holds j - k tiles
            while ((j + 1) * (j + 2) / 2 <= p) ++j;
            const int i = p - j * (j + 1) / 2 + k + 1;
            j += k + 1;
            const int ni = t.size(i), nj = t.size(j);
            if (i == j)
                FASTNPLM_F77(dsyrk_)("U", "T", &ni, &nk, &minus, t.at(k, i), &n, &one, t.at(i, i), &n, 1, 1);
            else
                FASTNPLM_F77(dgemm_)("T", "N", &ni, &nj, &nk, &minus, t.at(k, i), &n, t.at(k, j), &n, &one, t.at(i, j),
                                     &n, 1, 1);
        }
    }
    return failed;
}

void lauum_upper(double* u, int n, int threads) {
    single_threaded_blas();
    if (n < kTiledMin) return lauum_upper(u, n);
    const Tiles t{u, n, (n + kTile - 1) / kTile};
    const double one = 1.0;
    // (U U^T)_ij = sum_{k >= j} U_ik U_jk^T for i <= j: column j of tiles reads columns >= j only,
    // so columns go left to right, the off-diagonal tiles of a column (which read U_jj) first.
    for (int j = 0; j < t.nt; ++j) {
        const int nj = t.size(j);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int i = 0; i < j; ++i) {
            const int ni = t.size(i);
            FASTNPLM_F77(dtrmm_)("R", "U", "T", "N", &ni, &nj, &one, t.at(j, j), &n, t.at(i, j), &n, 1, 1, 1, 1);
            for (int k = j + 1; k < t.nt; ++k) {
                const int nk = t.size(k);
                FASTNPLM_F77(dgemm_)("N", "T", &ni, &nj, &nk, &one, t.at(i, k), &n, t.at(j, k), &n, &one, t.at(i, j),
                                     &n, 1, 1);
            }
        }
        int info = 0;
        FASTNPLM_F77(dlauum_)("U", &nj, t.at(j, j), &n, &info, 1);
        for (int k = j + 1; k < t.nt; ++k) {
            const int nk = t.size(k);
            FASTNPLM_F77(dsyrk_)("U", "N", &nj, &nk, &one, t.at(j, k), &n, &one, t.at(j, j), &n, 1, 1);
        }
    }
}

}  // namespace fastnplm::dense
