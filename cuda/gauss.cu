// Gaussian-kernel passes: k(x, c) = exp(-gamma ||x - c||^2), never storing the n x m matrix.
//
// Row passes (mv, tmv, fused, mm_expm1) share one shape: a block takes row tiles of kRows
// events (tile t goes to block t mod gridDim.x, gridDim.x = row_blocks(n), a function of n
// only), stages the tile in shared memory, and its kThreads threads sweep the centers
// (thread t owns centers t, t + kThreads, ...; the centers are stored transposed so those
// reads are coalesced). Sums over centers are block reductions through a fixed pairwise
// tree in shared memory; sums over events go into one partial per block (each thread owns
// its centers' entries) and the partials are added in block order by sum_blocks_kernel.
// So every result is a function of the inputs and n alone, never of launch timing.
//
// The fused product needs each kernel value twice (for K v, then for K^T(w ∘ K v)); the
// tile's kernel panel (kRows x m) is kept — in shared memory when it fits kSmemBudget,
// otherwise in a per-block slice of device memory — so each pair is evaluated once.
#include "device.cuh"

namespace fastnplm::FASTNPLM_CUDA_NS {
namespace {

// xs (kRows x d) = events row0 .. row0 + kRows - 1, zero past the last event.
__device__ void load_rows(const double* x, long long n, int d, long long row0, double* xs) {
    for (int idx = threadIdx.x; idx < kRows * d; idx += kThreads) {
        const int r = idx / d;
        const long long i = row0 + r;
        xs[idx] = i < n ? x[i * d + (idx - r * d)] : 0.0;
    }
}

// k[r] = exp(-gamma ||x_r - c_j||^2) for the staged rows r < rows, 0 for the others. The
// squared distance is summed over features in index order, as the CPU backend does.
__device__ __forceinline__ void kernel_column(const double* xs, int rows, int d, const double* ct, long long m,
                                              long long j, double gamma, double (&k)[kRows]) {
    double s[kRows];
    for (int r = 0; r < kRows; ++r) s[r] = 0.0;
    for (int q = 0; q < d; ++q) {
        const double cq = ct[q * m + j];
        for (int r = 0; r < kRows; ++r) {
            const double t = cq - xs[r * d + q];
            s[r] += t * t;
        }
    }
    for (int r = 0; r < kRows; ++r) k[r] = r < rows ? exp(-gamma * s[r]) : 0.0;
}

// red[r * kThreads + t] summed over t for r < nr by a fixed pairwise tree; the sums land in
// red[r * kThreads]. Every thread of the block calls it; it ends with a barrier.
__device__ void tree_sum(double* red, int nr) {
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (static_cast<int>(threadIdx.x) < s)
            for (int r = 0; r < nr; ++r) red[r * kThreads + threadIdx.x] += red[r * kThreads + threadIdx.x + s];
        __syncthreads();
    }
}

__device__ __forceinline__ int tile_rows(long long n, long long row0) {
    return n - row0 < kRows ? static_cast<int>(n - row0) : kRows;
}

// Stages row tile `tile` in xs (kRows x d) and returns its number of events; ends with a barrier.
__device__ int stage_tile(const double* x, long long n, int d, long long tile, double* xs) {
    load_rows(x, n, d, tile * kRows, xs);
    __syncthreads();  // the tile is staged
    return tile_rows(n, tile * kRows);
}

// (K v)_r for the staged rows into red[r * kThreads] (block tree over this thread's centers);
// with a panel, also stores k(x_r, c_j) at panel[r * m + j] for this thread's centers j.
// Every thread of the block calls it; it ends with a barrier.
__device__ void tile_dots(const double* xs, int rows, int d, const double* ct, long long m, double gamma,
                          const double* v, double* red, double* panel) {
    double p[kRows] = {};
    for (long long j = threadIdx.x; j < m; j += kThreads) {
        double k[kRows];
        kernel_column(xs, rows, d, ct, m, j, gamma, k);
        const double vj = v[j];
        for (int r = 0; r < kRows; ++r) {
            if (panel) panel[r * m + j] = k[r];  // read back later by this same thread only
            p[r] += k[r] * vj;
        }
    }
    for (int r = 0; r < kRows; ++r) red[r * kThreads + threadIdx.x] = p[r];
    __syncthreads();  // all partial dots written
    tree_sum(red, kRows);
}

__global__ void __launch_bounds__(kThreads)
    block_kernel(const double* x, long long n, int d, const double* ct, long long m, double gamma, double* out) {
    const long long total = n * m, step = static_cast<long long>(gridDim.x) * kThreads;
    for (long long e = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; e < total; e += step) {
        const long long i = e / m, j = e - i * m;
        double s = 0.0;
        for (int q = 0; q < d; ++q) {
            const double t = ct[q * m + j] - x[i * d + q];
            s += t * t;
        }
        out[e] = exp(-gamma * s);
    }
}

__global__ void __launch_bounds__(kThreads) mv_kernel(const double* x, long long n, int d, const double* ct,
                                                      long long m, double gamma, const double* v, double* out) {
    double* xs = dynamic_smem<double>();
    __shared__ double red[kRows * kThreads];
    const long long tiles = (n + kRows - 1) / kRows;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int rows = stage_tile(x, n, d, tile, xs);
        tile_dots(xs, rows, d, ct, m, gamma, v, red, nullptr);
        if (static_cast<int>(threadIdx.x) < rows) out[tile * kRows + threadIdx.x] = red[threadIdx.x * kThreads];
    }
}

// partial (gridDim.x x m): this block's sum over its events of u_i k(x_i, c_j).
__global__ void __launch_bounds__(kThreads) tmv_kernel(const double* x, long long n, int d, const double* ct,
                                                       long long m, double gamma, const double* u, double* partial) {
    double* xs = dynamic_smem<double>();
    double* acc = partial + blockIdx.x * m;
    const long long tiles = (n + kRows - 1) / kRows;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long row0 = tile * kRows;
        double ur[kRows];
        for (int r = 0; r < kRows; ++r) ur[r] = row0 + r < n ? u[row0 + r] : 0.0;
        const int rows = stage_tile(x, n, d, tile, xs);
        for (long long j = threadIdx.x; j < m; j += kThreads) {
            double k[kRows];
            kernel_column(xs, rows, d, ct, m, j, gamma, k);
            double a = 0.0;
            for (int r = 0; r < kRows; ++r) a += ur[r] * k[r];
            acc[j] += a;
        }
        __syncthreads();  // every thread is done with xs before the next tile overwrites it
    }
}

// partial (gridDim.x x m): this block's sum of w_i (K v)_i k(x_i, c_j). panel: kRows x m per
// block in device memory, or nullptr to keep it in shared memory after the row tile.
__global__ void __launch_bounds__(kThreads)
    fused_kernel(const double* x, long long n, int d, const double* ct, long long m, double gamma, const double* v,
                 const double* w, double* partial, double* panel_global) {
    double* xs = dynamic_smem<double>();
    double* panel = panel_global ? panel_global + blockIdx.x * kRows * m : xs + kRows * d;
    double* acc = partial + blockIdx.x * m;
    __shared__ double red[kRows * kThreads];
    const long long tiles = (n + kRows - 1) / kRows;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long row0 = tile * kRows;
        const int rows = stage_tile(x, n, d, tile, xs);
        tile_dots(xs, rows, d, ct, m, gamma, v, red, panel);
        double coef[kRows];
        for (int r = 0; r < kRows; ++r) coef[r] = r < rows ? w[row0 + r] * red[r * kThreads] : 0.0;
        for (long long j = threadIdx.x; j < m; j += kThreads) {
            double a = 0.0;
            for (int r = 0; r < kRows; ++r) a += coef[r] * panel[r * m + j];
            acc[j] += a;
        }
    }
}

// partial (gridDim.x x b): this block's sum of w_i expm1((K V)_iq); V is (m, b) row-major.
__global__ void __launch_bounds__(kThreads)
    mm_expm1_kernel(const double* x, long long n, int d, const double* ct, long long m, double gamma, const double* v,
                    long long b, const double* w, double* partial, double* panel_global) {
    double* xs = dynamic_smem<double>();
    double* panel = panel_global ? panel_global + blockIdx.x * kRows * m : xs + kRows * d;
    double* acc = partial + blockIdx.x * b;
    __shared__ double red[kRows * kCols * kThreads];
    __shared__ double terms[kRows * kCols];
    const long long tiles = (n + kRows - 1) / kRows;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long row0 = tile * kRows;
        const int rows = stage_tile(x, n, d, tile, xs);
        for (long long j = threadIdx.x; j < m; j += kThreads) {
            double k[kRows];
            kernel_column(xs, rows, d, ct, m, j, gamma, k);
            for (int r = 0; r < kRows; ++r) panel[r * m + j] = k[r];  // this thread's own entries
        }
        for (long long q0 = 0; q0 < b; q0 += kCols) {
            double p[kRows][kCols] = {};
            for (long long j = threadIdx.x; j < m; j += kThreads)
                for (int qq = 0; qq < kCols; ++qq) {
                    const double vq = q0 + qq < b ? v[j * b + q0 + qq] : 0.0;
                    for (int r = 0; r < kRows; ++r) p[r][qq] += panel[r * m + j] * vq;
                }
            for (int r = 0; r < kRows; ++r)
                for (int qq = 0; qq < kCols; ++qq) red[(r * kCols + qq) * kThreads + threadIdx.x] = p[r][qq];
            __syncthreads();  // all partial products written
            tree_sum(red, kRows * kCols);
            // one term per thread (r, qq) = (t / kCols, t % kCols), then thread 0 adds them in row order
            const int t = threadIdx.x, r = t / kCols, qq = t % kCols;
            if (t < kRows * kCols) terms[t] = r < rows && q0 + qq < b ? w[row0 + r] * expm1(red[t * kThreads]) : 0.0;
            __syncthreads();  // terms written
            if (t == 0)
                for (int rr = 0; rr < rows; ++rr)
                    for (int c = 0; c < kCols && q0 + c < b; ++c) acc[q0 + c] += terms[rr * kCols + c];
            __syncthreads();  // thread 0 has read terms, and everyone red, before the next chunk
        }
    }
}

// Rows [row0, row0 + rows) of the Nystrom features B = K T^-1 into bp (rows x m, row-major),
// one thread per event: its kernel row, then the forward substitution T^T b^T = k^T in the
// order of the CPU backend (subtract in index order, then multiply by 1 / T_jj).
__global__ void __launch_bounds__(kThreads)
    feature_rows_kernel(const double* x, long long row0, int rows, int d, const double* ct, long long m, double gamma,
                        const double* t, double* bp) {
    for (int r = blockIdx.x * kThreads + threadIdx.x; r < rows; r += gridDim.x * kThreads) {
        const double* xr = x + (row0 + r) * d;
        double* b = bp + static_cast<long long>(r) * m;
        for (long long j = 0; j < m; ++j) {
            double s = 0.0;
            for (int q = 0; q < d; ++q) {
                const double tq = ct[q * m + j] - xr[q];
                s += tq * tq;
            }
            b[j] = exp(-gamma * s);
        }
        for (long long j = 0; j < m; ++j) {
            const double* tj = t + j * m;  // column j of the upper factor
            double s = b[j];
            for (long long i = 0; i < j; ++i) s -= tj[i] * b[i];
            b[j] = s * (1.0 / tj[j]);
        }
    }
}

// acc_w(a, b) += sum_r w_r B_ra B_rb (b <= a, row-major m x m) and acc_g(a) += sum_r u_r B_ra for the
// rows of one chunk, rows in order; one thread per entry, so chunks accumulate deterministically.
__global__ void __launch_bounds__(kThreads)
    feature_gram_accumulate_kernel(const double* bp, int rows, long long m, const double* w, const double* u,
                                   double* acc_w, double* acc_g) {
    const long long total = m * m + m, step = static_cast<long long>(gridDim.x) * kThreads;
    for (long long e = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; e < total; e += step) {
        if (e >= m * m) {
            const long long a = e - m * m;
            double s = 0.0;
            for (int r = 0; r < rows; ++r) s += u[r] * bp[r * m + a];
            acc_g[a] += s;
            continue;
        }
        const long long a = e / m, b = e - a * m;
        if (b > a) continue;
        double s = 0.0;
        for (int r = 0; r < rows; ++r) s += w[r] * bp[r * m + a] * bp[r * m + b];
        acc_w[e] += s;
    }
}

// out_j = sum over blocks b (in order) of partial[b * width + j].
__global__ void __launch_bounds__(kThreads)
    sum_blocks_kernel(const double* partial, int blocks, long long width, double* out) {
    const long long step = static_cast<long long>(gridDim.x) * kThreads;
    for (long long j = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; j < width; j += step) {
        double s = 0.0;
        for (int b = 0; b < blocks; ++b) s += partial[b * width + j];
        out[j] = s;
    }
}

unsigned flat_blocks(long long work) {
    const long long b = (work + kThreads - 1) / kThreads;
    return static_cast<unsigned>(b < 1 ? 1 : (b > 4096 ? 4096 : b));
}

std::size_t tile_bytes(int d) { return sizeof(double) * kRows * static_cast<std::size_t>(d); }

void require_tile_fits(int d) {
    if (tile_bytes(d) > kSmemBudget)
        throw std::invalid_argument("CUDA backend: " + std::to_string(d) +
                                    " features do not fit a shared-memory row tile (at most " +
                                    std::to_string(kSmemBudget / (sizeof(double) * kRows)) + ")");
}

// Dynamic shared memory of a paneled pass, and the panel (device memory) when it does not fit there.
std::size_t panel_setup(DeviceCenters c, int blocks, Workspace& ws, double*& panel) {
    const std::size_t panel_bytes = sizeof(double) * kRows * static_cast<std::size_t>(c.m);
    if (tile_bytes(c.d) + panel_bytes <= kSmemBudget) {
        panel = nullptr;
        return tile_bytes(c.d) + panel_bytes;
    }
    ws.panel.resize(static_cast<std::size_t>(blocks) * kRows * c.m);
    panel = ws.panel.data();
    return tile_bytes(c.d);
}

}  // namespace

void gauss_feature_gram(DevicePoints x, DeviceCenters c, double gamma, const double* t, const double* w,
                        const double* u, double* out_w, double* out_g, Workspace& ws) {
    const long long m = c.m;
    check(cudaMemset(out_w, 0, sizeof(double) * m * m), "cudaMemset");
    check(cudaMemset(out_g, 0, sizeof(double) * m), "cudaMemset");
    ws.panel.resize(static_cast<std::size_t>(kFeatureChunk) * m);
    for (long long row0 = 0; row0 < x.n; row0 += kFeatureChunk) {
        const int rows = static_cast<int>(x.n - row0 < kFeatureChunk ? x.n - row0 : kFeatureChunk);
        FASTNPLM_LAUNCH(feature_rows_kernel, flat_blocks(rows), kThreads, 0, nullptr)(x.x, row0, rows, x.d, c.ct, m,
                                                                                      gamma, t, ws.panel.data());
        check_launch("feature_rows_kernel");
        FASTNPLM_LAUNCH(feature_gram_accumulate_kernel, flat_blocks(m * m + m), kThreads, 0, nullptr)(
            ws.panel.data(), rows, m, w + row0, u + row0, out_w, out_g);
        check_launch("feature_gram_accumulate_kernel");
    }
}

void sum_blocks(const double* partial, int blocks, long long width, double* out) {
    FASTNPLM_LAUNCH(sum_blocks_kernel, flat_blocks(width), kThreads, 0, nullptr)(partial, blocks, width, out);
    check_launch("sum_blocks_kernel");
}

int row_blocks(std::int64_t n) {
    const std::int64_t tiles = (n + kRows - 1) / kRows;
    return static_cast<int>(tiles < 1 ? 1 : (tiles > kMaxBlocks ? kMaxBlocks : tiles));
}

void gauss_block(DevicePoints x, DeviceCenters c, double gamma, double* out) {
    if (x.n == 0) return;
    FASTNPLM_LAUNCH(block_kernel, flat_blocks(x.n * c.m), kThreads, 0, nullptr)(x.x, x.n, x.d, c.ct, c.m, gamma, out);
    check_launch("block_kernel");
}

void gauss_mv(DevicePoints x, DeviceCenters c, double gamma, const double* v, double* out) {
    if (x.n == 0) return;
    require_tile_fits(x.d);
    FASTNPLM_LAUNCH(mv_kernel, row_blocks(x.n), kThreads, tile_bytes(x.d), nullptr)(x.x, x.n, x.d, c.ct, c.m, gamma, v,
                                                                                    out);
    check_launch("mv_kernel");
}

void gauss_tmv(DevicePoints x, DeviceCenters c, double gamma, const double* u, double* out, Workspace& ws) {
    require_tile_fits(x.d);
    const int blocks = row_blocks(x.n);
    ws.partial.resize(static_cast<std::size_t>(blocks) * c.m);
    ws.partial.zero();
    if (x.n > 0) {
        FASTNPLM_LAUNCH(tmv_kernel, blocks, kThreads, tile_bytes(x.d), nullptr)(x.x, x.n, x.d, c.ct, c.m, gamma, u,
                                                                                ws.partial.data());
        check_launch("tmv_kernel");
    }
    sum_blocks(ws.partial.data(), blocks, c.m, out);
}

void gauss_fused(DevicePoints x, DeviceCenters c, double gamma, const double* v, const double* w, double* out,
                 Workspace& ws) {
    require_tile_fits(x.d);
    const int blocks = row_blocks(x.n);
    ws.partial.resize(static_cast<std::size_t>(blocks) * c.m);
    ws.partial.zero();
    if (x.n > 0) {
        double* panel = nullptr;
        const std::size_t smem = panel_setup(c, blocks, ws, panel);
        FASTNPLM_LAUNCH(fused_kernel, blocks, kThreads, smem, nullptr)(x.x, x.n, x.d, c.ct, c.m, gamma, v, w,
                                                                       ws.partial.data(), panel);
        check_launch("fused_kernel");
    }
    sum_blocks(ws.partial.data(), blocks, c.m, out);
}

void gauss_mm_expm1(DevicePoints x, DeviceCenters c, double gamma, const double* v, std::int64_t b, const double* w,
                    double* out, Workspace& ws) {
    require_tile_fits(x.d);
    const int blocks = row_blocks(x.n);
    ws.partial.resize(static_cast<std::size_t>(blocks) * b);
    ws.partial.zero();
    if (x.n > 0) {
        double* panel = nullptr;
        const std::size_t smem = panel_setup(c, blocks, ws, panel);
        FASTNPLM_LAUNCH(mm_expm1_kernel, blocks, kThreads, smem, nullptr)(x.x, x.n, x.d, c.ct, c.m, gamma, v, b, w,
                                                                          ws.partial.data(), panel);
        check_launch("mm_expm1_kernel");
    }
    sum_blocks(ws.partial.data(), blocks, b, out);
}

}  // namespace fastnplm::FASTNPLM_CUDA_NS
