#pragma once
// The subproblem of the neural NPLM's Newton fit (NeuralNPLM(optimizer="newton"),
// python/fastnplm/models/_newton.py): approximately minimise the quadratic model
//   q(s) = g.s + s.H.s / 2   over the box lo <= s <= hi   (lo <= 0 <= hi),
// H symmetric and possibly indefinite, by projected Newton on q (Bertsekas 1982). From s = 0 the
// first direction is -g scaled by the curvature along it (a Cauchy step), the next ones damped
// Newton directions on the free coordinates -- those not at a face of the box whose model
// gradient pushes outwards. Where the free Hessian H_FF is positive definite (a Cholesky
// factorisation succeeds) the direction is Newton's, -H_FF^-1 g_F; else H_FF = V diag(lam) V^T
// is replaced by V diag(max(|lam|, mu)) V^T (mu = 1e-10 max |lam|), so that negative curvature is
// followed downhill. Each direction d is searched along the projection arc P(s + a d): a = 1
// halved until q falls by 1e-4 of its linear prediction, then, along negative curvature and on
// the first direction, doubled while q keeps falling. Stops when the projected gradient of q is
// at most rtol times its value at s = 0, when q stops decreasing, or after 20 directions.
//
// Small dense problems (the network's parameters: up to a few hundred); one thread, LAPACK for
// the Cholesky factorisation and the eigen-decomposition. Deterministic.
#include <cstdint>

namespace fastnplm {

/// Writes the step s (n) and returns q(s). H is n x n row-major (symmetric: either triangle).
double box_qp(std::int64_t n, const double* g, const double* H, const double* lo, const double* hi, double rtol,
              double* s);

}  // namespace fastnplm
