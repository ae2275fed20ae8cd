#pragma once
// Test support of the checkpoint layout tests: fp16/bf16-exact quantized matrices, GPTQ
// act-order results, bitwise matrix comparison. Nothing here computes an expected value with
// the code under test (include/ptq/io).
#include <bit>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <ptq/algo/gptq.hpp>
#include <ptq/algo/rtn.hpp>
#include <ptq/calib/calibration_stats.hpp>
#include <ptq/format/half.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq_io_test {

using RowMatrixXf = ptq::RowMatrixXf;

/// r x c matrix of N(0, 1) samples from mt19937(seed), each column scaled by 1 + (c % 7).
inline RowMatrixXf weights(Eigen::Index r, Eigen::Index c, unsigned seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> n(0.0f, 1.0f);
    RowMatrixXf m(r, c);
    for (Eigen::Index i = 0; i < r; ++i)
        for (Eigen::Index j = 0; j < c; ++j) m(i, j) = n(g) * float(1 + j % 7) * 0.02f;
    return m;
}

enum class Storage { f16, bf16 };

/// Replaces every float scale of q by its nearest fp16 (or bf16) value, so that a 16-bit file
/// can hold it exactly (the codes stay as they are: they are valid codes for any scale).
template <class F>
void make_scales_exact(ptq::QuantizedMatrix<F>& q, Storage s = Storage::f16) {
    for (auto& p : q.params()) p.scale = s == Storage::f16 ? ptq::round_to_half(p.scale) : ptq::round_to_bf16(p.scale);
}

/// Number of elements whose bit patterns differ (so -0 != +0 and NaN == NaN of the same bits).
inline std::size_t bit_mismatches(const RowMatrixXf& a, const RowMatrixXf& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols()) return std::size_t(-1);
    std::size_t n = 0;
    for (Eigen::Index i = 0; i < a.rows(); ++i)
        for (Eigen::Index j = 0; j < a.cols(); ++j)
            n += std::bit_cast<std::uint32_t>(a(i, j)) != std::bit_cast<std::uint32_t>(b(i, j));
    return n;
}

/// Columns of a storage-order matrix put back in the original order: out[:, perm[k]] = m[:, k].
inline RowMatrixXf unpermute(const RowMatrixXf& m, const std::vector<std::size_t>& perm) {
    RowMatrixXf out(m.rows(), m.cols());
    for (Eigen::Index k = 0; k < m.cols(); ++k) out.col(Eigen::Index(perm[std::size_t(k)])) = m.col(k);
    return out;
}

/// A GPTQ act-order run (desc_act) on correlated inputs with very different channel scales,
/// so that the processing order is far from the identity.
template <class F, class G>
ptq::GptqResult<F> gptq_act_order(Eigen::Index out, Eigen::Index in, const G& gran, unsigned seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> n(0.0f, 1.0f);
    Eigen::MatrixXf x(4 * in, in);
    for (Eigen::Index i = 0; i < x.rows(); ++i)
        for (Eigen::Index j = 0; j < in; ++j) x(i, j) = n(g) * float(1 + (j * 37) % 11);
    ptq::CalibrationStats stats{in};
    stats.add(x);
    ptq::GptqOptions o;
    o.act_order = true;
    return ptq::Gptq<F, G>(o, gran).quantize(weights(out, in, seed + 1), stats.hessian());
}

}  // namespace ptq_io_test
