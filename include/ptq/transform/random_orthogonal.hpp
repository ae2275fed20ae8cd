#pragma once
// Random orthogonal matrices of any size (QR of a seeded Gaussian matrix).
#include <cstddef>
#include <cstdint>

#include <Eigen/Core>
#include <Eigen/QR>

#include <ptq/detail/random.hpp>
#include <ptq/error.hpp>

namespace ptq {

/// A random orthogonal n x n matrix in double, deterministic by seed: G with independent
/// standard normal entries (detail::SeededRandom(seed), column-major order), G = QR by
/// Householder QR, then Q <- Q diag(sign(R_ii)) (sign(0) = +1), which makes Q Haar-distributed
/// (Mezzadri 2007). Q Q^T = I to double rounding (about n * 1e-16). For sizes that are not a
/// power of two (e.g. 172); RandomizedHadamard is the fast choice for powers of two.
inline Eigen::MatrixXd random_orthogonal(std::size_t n, std::uint64_t seed) {
    if (n == 0) detail::throw_invalid("random_orthogonal", "n", "must be > 0");
    detail::SeededRandom g(seed);
    const auto ni = static_cast<Eigen::Index>(n);
    Eigen::MatrixXd a(ni, ni);
    for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = g.normal();
    const Eigen::HouseholderQR<Eigen::MatrixXd> qr(a);
    Eigen::MatrixXd q = qr.householderQ();
    const Eigen::MatrixXd& r = qr.matrixQR();
    for (Eigen::Index j = 0; j < q.cols(); ++j)
        if (r(j, j) < 0.0) q.col(j) = -q.col(j);
    return q;
}

}  // namespace ptq
