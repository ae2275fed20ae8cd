#pragma once
// Fast Walsh-Hadamard transform (normalised, in place) and the randomized Hadamard rotation.
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/detail/eigen.hpp>
#include <ptq/detail/random.hpp>
#include <ptq/error.hpp>

namespace ptq {

/// True for n = 1, 2, 4, 8, ...
constexpr bool is_power_of_two(std::size_t n) noexcept { return n != 0 && (n & (n - 1)) == 0; }

namespace detail {
inline void check_hadamard_size(std::size_t n, const char* fn) {
    if (!is_power_of_two(n))
        throw_invalid(fn, "n", std::to_string(n) + " is not a power of two (use random_orthogonal for other sizes)");
}
/// 1/sqrt(n) rounded once to float: exact when n is a power of 4.
inline float hadamard_norm(std::size_t n) noexcept { return static_cast<float>(1.0 / std::sqrt(double(n))); }
}  // namespace detail

namespace ref {
/// Scalar reference of fwht: Sylvester butterflies (a, b) -> (a + b, a - b) for spans
/// h = 1, 2, 4, ..., n/2 (x[i], x[i + h] for i in each block of 2h), then x *= float(1/sqrt(n)).
/// Computes x <- H_n x / sqrt(n) with H_n the Sylvester Hadamard matrix (H_1 = [1],
/// H_2n = [[H_n, H_n], [H_n, -H_n]]), which is symmetric and, normalised, orthogonal and an
/// involution. Every output is one float rounding per butterfly stage and one for the scaling.
inline void fwht(float* x, std::size_t n) noexcept {
    for (std::size_t h = 1; h < n; h *= 2)
        for (std::size_t b = 0; b < n; b += 2 * h)
            for (std::size_t i = b; i < b + h; ++i) {
                const float a = x[i], c = x[i + h];
                x[i] = a + c;
                x[i + h] = a - c;
            }
    const float s = detail::hadamard_norm(n);
    for (std::size_t i = 0; i < n; ++i) x[i] *= s;
}
}  // namespace ref

/// x <- H_n x / sqrt(n) in place (see ref::fwht), n a power of two (else ptq::invalid_argument).
/// Spans h >= the SIMD width run as batch butterflies, smaller spans as the scalar loop: the
/// same float additions, subtractions and final multiplication on the same operands as the
/// reference, so the result equals ref::fwht bit for bit on every architecture.
template <class Arch = xsimd::default_arch>
void fwht(float* x, std::size_t n) {
    detail::check_hadamard_size(n, "fwht");
    using B = xsimd::batch<float, Arch>;
    constexpr std::size_t W = B::size;
    std::size_t h = 1;
    for (; h < n && h < W; h *= 2)
        for (std::size_t b = 0; b < n; b += 2 * h)
            for (std::size_t i = b; i < b + h; ++i) {
                const float a = x[i], c = x[i + h];
                x[i] = a + c;
                x[i + h] = a - c;
            }
    for (; h < n; h *= 2)  // h >= W: h is a multiple of W
        for (std::size_t b = 0; b < n; b += 2 * h)
            for (std::size_t i = b; i < b + h; i += W) {
                const B a = B::load_unaligned(x + i), c = B::load_unaligned(x + i + h);
                (a + c).store_unaligned(x + i);
                (a - c).store_unaligned(x + i + h);
            }
    const float s = detail::hadamard_norm(n);
    std::size_t i = 0;
    for (; i + W <= n; i += W) (B::load_unaligned(x + i) * B(s)).store_unaligned(x + i);
    for (; i < n; ++i) x[i] *= s;
}

/// fwht of every row of m (m <- m H_n / sqrt(n), H_n symmetric): the online transform of
/// activations [tokens x n].
template <class Arch = xsimd::default_arch>
void fwht_rows(Eigen::Ref<RowMatrixXf> m) {
    detail::check_hadamard_size(std::size_t(m.cols()), "fwht_rows");
    for (Eigen::Index r = 0; r < m.rows(); ++r) fwht<Arch>(m.row(r).data(), std::size_t(m.cols()));
}

/// The normalised Sylvester Hadamard matrix H_n / sqrt(n) in double, from its closed form
/// H_n(i, j) = (-1)^popcount(i & j) (for tests and for folding into weights).
inline Eigen::MatrixXd hadamard_matrix(std::size_t n) {
    detail::check_hadamard_size(n, "hadamard_matrix");
    const double s = 1.0 / std::sqrt(double(n));
    const auto ni = static_cast<Eigen::Index>(n);
    Eigen::MatrixXd h(ni, ni);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) h(Eigen::Index(i), Eigen::Index(j)) = (std::popcount(i & j) & 1) ? -s : s;
    return h;
}

/// Randomized Hadamard rotation Q = H_n diag(s) / sqrt(n) with signs s_i = +-1 drawn from
/// detail::SeededRandom(seed) (QuaRot's random Hadamard): orthogonal, deterministic by seed.
/// apply(x) computes x <- Q x = fwht(s .* x); apply_rows(m) computes m <- m Q^T (rows as
/// vectors); matrix() is Q in double.
class RandomizedHadamard {
public:
    RandomizedHadamard(std::size_t n, std::uint64_t seed) : signs_(Eigen::Index(n)) {
        detail::check_hadamard_size(n, "RandomizedHadamard");
        detail::SeededRandom g(seed);
        for (Eigen::Index i = 0; i < signs_.size(); ++i) signs_(i) = g.sign();
    }
    std::size_t size() const noexcept { return std::size_t(signs_.size()); }
    const Eigen::VectorXf& signs() const noexcept { return signs_; }

    template <class Arch = xsimd::default_arch>
    void apply(float* x) const {
        for (Eigen::Index i = 0; i < signs_.size(); ++i) x[i] *= signs_(i);  // exact
        fwht<Arch>(x, size());
    }
    template <class Arch = xsimd::default_arch>
    void apply_rows(Eigen::Ref<RowMatrixXf> m) const {
        if (std::size_t(m.cols()) != size())
            detail::throw_invalid("RandomizedHadamard::apply_rows", "m", "columns differ from the rotation size");
        for (Eigen::Index r = 0; r < m.rows(); ++r) apply<Arch>(m.row(r).data());
    }
    Eigen::MatrixXd matrix() const { return hadamard_matrix(size()) * signs_.cast<double>().asDiagonal(); }

private:
    Eigen::VectorXf signs_;
};

}  // namespace ptq
