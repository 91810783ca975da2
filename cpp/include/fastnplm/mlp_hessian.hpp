#pragma once
// Loss, gradient and Hessian of the neural NPLM loss for one network: the pass behind the
// second-order fit of the clipped network (NeuralNPLM(optimizer="newton"), docs/neural.md).
//
// The Hessian is the EXACT one, not Gauss-Newton: with c_e = dL/df_e (w e^f on R, -1 on D),
//   hess L = sum_R w e^f grad f grad f^T  +  sum_e c_e hess f_e.
// The second sum does not vanish where Newton ends (the data's -sum_D hess f has no
// zero-residual cancellation as in least squares) and is indefinite away from the optimum;
// dropping it would cost Newton its quadratic convergence and hide the negative curvature the
// optimiser must damp. Both sums are computed together, exactly in exact arithmetic.
//
// How: the gradient of f with respect to layer m's parameters is a Kronecker product,
// d f / d W_m[u, v] = delta_{m,u} a~_{m-1,v} (a~ = (a, 1): the bias is column in_m). Every term of
// the per-event Hessian -- the Gauss-Newton outer product, each sigmoid's adj * sigma'' * grad z
// grad z^T, and each product W_m a_{m-1}'s cross terms -- then has the form
//   H[(m,u,v), (m',u',v')] = a~_{m-1,v} * Psi_m[u, (m',u',v')]
// with Psi_m built per event from small unit-by-unit matrices (Psi_m[u, (m',u',v')] =
// K[(m,u),(m',u')] a~_{m'-1,v'} + the cross factor, K = sum over units of s * dz/dz_m dz/dz_m'^T).
// The sum over the events of a block is then one matrix product per unit, A~_{m-1}^T Psi_m[u]
// (BLAS dgemm, events as the inner dimension), about P^2 / 2 multiply-adds per event in all:
// the count of the Gauss-Newton part alone, with the remainder folded into the same products.
//
// Every sum over events runs over a fixed partition of the events (a function of the numbers
// of events and of the network's shape only), partials added in a fixed order, BLAS on one
// thread: the results do not depend on the number of threads, bit for bit. The loss and the
// gradient are the same bits whether or not the Hessian is asked for (they come from the same
// code), and equal mlp_loss_grad's up to rounding (that pass sums in another order). float64.
#include <cstdint>

#include "fastnplm/mlp.hpp"
#include "fastnplm/view.hpp"

namespace fastnplm {

/// L, its gradient and its exact Hessian for one network: params (n_params) in mlp.hpp's flat
/// layout; reference (N_R, d) with weights (N_R,); data (N_D, d). loss (1) is written; grad
/// (n_params) and hess (n_params x n_params, symmetric, row-major) when not nullptr (hess alone
/// also computes the gradient internally). threads <= 0: all cores.
void mlp_loss_grad_hess(const MlpShape& shape, MatrixView reference, const double* reference_weights, MatrixView data,
                        const double* params, double* loss, double* grad, double* hess, int threads = 0);

}  // namespace fastnplm
