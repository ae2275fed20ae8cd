#pragma once
// Truncated SVD backends for the low-rank corrections: Eigen's exact BDCSVD and a randomised
// range finder (Halko, Martinsson & Tropp 2011, Algorithms 4.4 + 5.1).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include <Eigen/Core>
#include <Eigen/QR>
#include <Eigen/SVD>

#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>

namespace ptq {

/// Which SVD computes the top-k triplets.
enum class SvdMethod : std::uint8_t { exact, randomized };

/// Options of the randomised SVD. Deterministic for a given seed: the Gaussian test matrix
/// is drawn from std::mt19937_64 (whose output is fully specified by the standard) through
/// ptq's own Box-Muller transform, so the result is the same on every platform and run.
struct RandomizedSvdOptions {
    int oversampling = 10;     ///< extra columns p of the sketch (l = k + p)
    int power_iterations = 4;  ///< subspace iterations q (each re-orthonormalised)
    std::uint64_t seed = 0x5eedULL;
};

/// Top-k singular triplets: A ~= U * diag(S) * V^T, U [m x k], S [k] descending, V [n x k].
struct TruncatedSvd {
    Eigen::MatrixXf U;
    Eigen::VectorXf S;
    Eigen::MatrixXf V;
};

namespace detail {

/// Standard normal matrix from a seeded mt19937_64 (Box-Muller on 53-bit uniforms).
inline Eigen::MatrixXf gaussian_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    auto uniform = [&gen] { return (double(gen() >> 11) + 0.5) * (1.0 / 9007199254740992.0); };  // (0, 1)
    Eigen::MatrixXf g(rows, cols);
    constexpr double two_pi = 6.283185307179586476925286766559;
    for (Eigen::Index i = 0; i < g.size(); i += 2) {
        const double r = std::sqrt(-2.0 * std::log(uniform())), t = two_pi * uniform();
        g.data()[i] = static_cast<float>(r * std::cos(t));
        if (i + 1 < g.size()) g.data()[i + 1] = static_cast<float>(r * std::sin(t));
    }
    return g;
}

/// Orthonormal basis of the columns of y (thin Q of a Householder QR).
inline Eigen::MatrixXf orthonormalize(const Eigen::MatrixXf& y) {
    Eigen::HouseholderQR<Eigen::MatrixXf> qr(y);
    return qr.householderQ() * Eigen::MatrixXf::Identity(y.rows(), std::min(y.rows(), y.cols()));
}

inline void check_rank(const char* fn, Eigen::Index k, Eigen::Index m, Eigen::Index n) {
    if (k < 0 || k > std::min(m, n))
        throw_invalid(fn, "rank",
                      std::to_string(k) + " is outside [0, min(rows, cols) = " + std::to_string(std::min(m, n)) + "]");
}

/// The rank-k "SVD" of a matrix with no rank to give (k = 0 or an empty matrix): zero factors.
inline TruncatedSvd zero_svd(Eigen::Index m, Eigen::Index n, Eigen::Index k) {
    TruncatedSvd r;
    r.U.setZero(m, k);
    r.S.setZero(k);
    r.V.setZero(n, k);
    return r;
}

}  // namespace detail

/// Exact top-k SVD (Eigen::BDCSVD, thin U/V). Throws ptq::invalid_argument for a rank outside
/// [0, min(rows, cols)] and ptq::non_finite_error for NaN/Inf input.
template <class Derived>
TruncatedSvd exact_svd(const Eigen::MatrixBase<Derived>& a, Eigen::Index k) {
    detail::check_rank("exact_svd", k, a.rows(), a.cols());
    const Eigen::MatrixXf m = a.template cast<float>();
    if (!detail::all_finite(m)) detail::throw_non_finite("exact_svd", "a", "input matrix");
    if (k == 0 || m.size() == 0) return detail::zero_svd(m.rows(), m.cols(), k);
    TruncatedSvd r;
    Eigen::BDCSVD<Eigen::MatrixXf> svd(m, Eigen::ComputeThinU | Eigen::ComputeThinV);
    r.U = svd.matrixU().leftCols(k);
    r.S = svd.singularValues().head(k);
    r.V = svd.matrixV().leftCols(k);
    return r;
}

/// Randomised top-k SVD: Y = A*Omega (Omega n x l Gaussian, l = min(k + p, min(m, n))),
/// q power iterations Q <- orth(A * orth(A^T * Q)), then the exact SVD of the small
/// B = Q^T A (l x n); U = Q * U_B. Cost ~ (2q + 2) GEMMs of m x n x l.
template <class Derived>
TruncatedSvd randomized_svd(const Eigen::MatrixBase<Derived>& a, Eigen::Index k, const RandomizedSvdOptions& o = {}) {
    detail::check_rank("randomized_svd", k, a.rows(), a.cols());
    if (o.oversampling < 0) detail::throw_invalid("randomized_svd", "oversampling", "must be >= 0");
    if (o.power_iterations < 0) detail::throw_invalid("randomized_svd", "power_iterations", "must be >= 0");
    const Eigen::MatrixXf m = a.template cast<float>();
    if (!detail::all_finite(m)) detail::throw_non_finite("randomized_svd", "a", "input matrix");
    if (k == 0 || m.size() == 0) return detail::zero_svd(m.rows(), m.cols(), k);
    TruncatedSvd r;
    const Eigen::Index l = std::min<Eigen::Index>(k + o.oversampling, std::min(m.rows(), m.cols()));
    Eigen::MatrixXf q = detail::orthonormalize(m * detail::gaussian_matrix(m.cols(), l, o.seed));
    for (int i = 0; i < o.power_iterations; ++i) {
        const Eigen::MatrixXf z = detail::orthonormalize(m.transpose() * q);
        q = detail::orthonormalize(m * z);
    }
    const Eigen::MatrixXf b = q.transpose() * m;  // l x n
    Eigen::BDCSVD<Eigen::MatrixXf> svd(b, Eigen::ComputeThinU | Eigen::ComputeThinV);
    r.U = q * svd.matrixU().leftCols(k);
    r.S = svd.singularValues().head(k);
    r.V = svd.matrixV().leftCols(k);
    return r;
}

/// Dispatch on the method.
template <class Derived>
TruncatedSvd truncated_svd(const Eigen::MatrixBase<Derived>& a, Eigen::Index k, SvdMethod method,
                           const RandomizedSvdOptions& o = {}) {
    return method == SvdMethod::exact ? exact_svd(a, k) : randomized_svd(a, k, o);
}

}  // namespace ptq
