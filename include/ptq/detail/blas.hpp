#pragma once
// The float matrix product of ptq's hot loops (GPTQ's updates, the Hessian's X^T X panels):
// C = alpha op(A) op(B) + beta C on column-major Eigen blocks, through a CBLAS sgemm when the program
// defines PTQ_USE_BLAS (and links a CBLAS, e.g. Debian's libopenblas-dev: -lopenblas), else
// through Eigen. The callers split their products into fixed tiles run on ptq's threads.
//
// With PTQ_USE_BLAS and OpenBLAS, ptq sets OpenBLAS to one thread (openblas_set_num_threads(1))
// on its first product: ptq runs its products in fixed tiles on its own threads
// (ptq::set_num_threads), so that the results do not depend on the thread count.
#include <algorithm>
#include <cstddef>
#include <limits>
#include <mutex>

#include <Eigen/Core>

#include <ptq/error.hpp>

#ifdef PTQ_USE_BLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
#endif

namespace ptq::detail {

/// A writable column-major float block (unit inner stride, any outer stride).
using MatRef = Eigen::Ref<Eigen::MatrixXf>;
/// A read-only one.
using ConstMatRef = Eigen::Ref<const Eigen::MatrixXf>;

/// True when ptq's products go through a CBLAS (the program defines PTQ_USE_BLAS).
inline constexpr bool uses_blas() noexcept {
#ifdef PTQ_USE_BLAS
    return true;
#else
    return false;
#endif
}

#ifdef PTQ_USE_BLAS
inline void blas_single_thread_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (openblas_set_num_threads) openblas_set_num_threads(1);
    });
}
#endif

/// C = alpha op(A) op(B) + beta C on the calling thread, op(X) = X or X^T (trans_a, trans_b);
/// shapes must agree (op(A): C.rows() x k, op(B): k x C.cols()). Summation order: the BLAS's or
/// Eigen's (fixed for a given shape and backend).
inline void gemm(MatRef c, const ConstMatRef& a, bool trans_a, const ConstMatRef& b, bool trans_b, float alpha,
                 float beta) {
    const Eigen::Index m = c.rows(), n = c.cols(), k = trans_b ? b.cols() : b.rows();
    if ((trans_a ? a.cols() : a.rows()) != m || (trans_a ? a.rows() : a.cols()) != k ||
        (trans_b ? b.rows() : b.cols()) != n)
        throw_invalid("gemm", "a", "shapes of op(A), op(B) and C do not agree");
    if (m == 0 || n == 0) return;
#ifdef PTQ_USE_BLAS
    constexpr Eigen::Index big = std::numeric_limits<int>::max();
    if (k > 0 && m < big && n < big && k < big && a.outerStride() < big && b.outerStride() < big &&
        c.outerStride() < big) {
        blas_single_thread_once();
        cblas_sgemm(CblasColMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(m),
                    int(n), int(k), alpha, a.data(), int(std::max<Eigen::Index>(1, a.outerStride())), b.data(),
                    int(std::max<Eigen::Index>(1, b.outerStride())), beta, c.data(), int(c.outerStride()));
        return;
    }
#endif
    if (beta == 0.0f) c.setZero();
    else if (beta != 1.0f) c *= beta;
    if (trans_a && trans_b) c.noalias() += alpha * (a.transpose() * b.transpose());
    else if (trans_a) c.noalias() += alpha * (a.transpose() * b);
    else if (trans_b) c.noalias() += alpha * (a * b.transpose());
    else c.noalias() += alpha * (a * b);
}

}  // namespace ptq::detail
