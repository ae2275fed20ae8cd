#pragma once
// LQER / L²QER / LoRC: low-rank reconstruction of the quantization error,
//   W ~= Q(W) + A * B,   A [out x k],  B [k x in],   y = Q(W) x + A (B x).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <type_traits>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/algo/activation.hpp>
#include <ptq/algo/gptq.hpp>
#include <ptq/algo/rtn.hpp>
#include <ptq/algo/svd.hpp>
#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/float32.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/metric/metrics.hpp>
#include <ptq/observe/clip_search.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

/// Options of Lqer. Defaults: rank 32, L²QER scaling on, exact SVD.
struct LqerOptions {
    Eigen::Index rank = 32;            ///< k
    bool scaled = true;                ///< true: L²QER (needs activation magnitudes); false: LQER / LoRC
    SvdMethod svd = SvdMethod::exact;  ///< exact BDCSVD or randomised range finder
    RandomizedSvdOptions randomized{};
    /// L²QER scale floor: s_j <- max(s_j, scale_floor * max_j s_j) before normalisation, so
    /// that dead or tiny channels (s_j ~ 0) do not blow up B = Sigma V^T S^-1. With the default
    /// 1e-3, the columns of B are amplified at most 1000x relative to the largest channel.
    float scale_floor = 1e-3f;
    QuantOptions weight_quant{};  ///< options of the RTN for Q(W) when it is not given
    QuantOptions factor_quant{};  ///< options of the RTN of the factors
};

/// Result of Lqer::compute.
template <QuantFormat WF, class LF>
struct LqerResult {
    QuantizedMatrix<WF> weight;       ///< Q(W)
    RowMatrixXf weight_dequantized;   ///< the dense matrix Q(W) stands for
    RowMatrixXf A;                    ///< [out x k] as used at inference (dequantized if LF is a format)
    RowMatrixXf B;                    ///< [k x in]
    Eigen::VectorXf scale;            ///< L²QER s (normalised, floored); all ones for LQER
    Eigen::VectorXf singular_values;  ///< top-k singular values of the decomposed matrix (E or E*S)
    double error_before = 0.0;        ///< ||W - Q(W)||_F
    double error_after = 0.0;         ///< ||W - Q(W) - A B||_F
    double effective_bits = 0.0;      ///< bits per weight of Q(W) plus the factors
    /// Quantized factors when LF is a format (empty for Float32).
    std::optional<QuantizedMatrix<std::conditional_t<std::is_same_v<LF, Float32>, WF, LF>>> A_q, B_q;

    Eigen::Index rank() const noexcept { return A.cols(); }
    /// Extra multiply-adds per token of the correction, (in + out) * k, relative to in * out.
    double extra_macs_ratio() const noexcept {
        const double in = double(B.cols()), out = double(A.rows());
        return in * out == 0.0 ? 0.0 : (in + out) * double(rank()) / (in * out);
    }
};

namespace detail {
/// L²QER scale: floor, then divide by sqrt(min * max) (docs/DESIGN.md §14). All-zero -> ones.
inline Eigen::VectorXf l2qer_scale(const Eigen::VectorXf& s_in, float floor_rel) {
    if (!detail::all_finite(s_in)) throw_non_finite("Lqer::compute", "act_scale", "activation magnitudes");
    if ((s_in.array() < 0.0f).any()) throw_invalid("Lqer::compute", "act_scale", "must be non-negative");
    const float mx = s_in.size() ? s_in.maxCoeff() : 0.0f;
    if (!(mx > 0.0f)) return Eigen::VectorXf::Ones(s_in.size());
    Eigen::VectorXf s = s_in.cwiseMax(floor_rel * mx);
    return s / std::sqrt(s.minCoeff() * s.maxCoeff());
}
}  // namespace detail

/// LQER with weights in WF at granularity WG and factors in LF (Float32 or a format) at LG.
///   E = W - Q(W);  S = diag(s) (L²QER) or I (LQER/LoRC);  (E S) ~= U_k Sigma_k V_k^T;
///   A = U_k,  B = Sigma_k V_k^T S^-1   (the scaling undone on the input side);
///   then A and B are quantized with RTN in LF (groups along their in_features: k for A,
///   in for B) unless LF is Float32.
template <QuantFormat WF, class WG = default_granularity_t<WF>, class LF = Float32,
          class LG = std::conditional_t<std::is_same_v<LF, Float32>, PerChannel, default_granularity_t<LF>>,
          class Arch = xsimd::default_arch>
class Lqer {
public:
    /// Throws ptq::invalid_argument naming the invalid option ('options.rank', ...) or granularity.
    explicit Lqer(const LqerOptions& o = {}, const WG& wg = {}, const LG& lg = {}) : opt_(o), wg_(wg), lg_(lg) {
        if (o.rank < 0) detail::throw_invalid("Lqer", "options.rank", "must be >= 0");
        if (!(o.scale_floor > 0.0f && o.scale_floor <= 1.0f))
            detail::throw_invalid("Lqer", "options.scale_floor", "must be in (0, 1]");
        check_granularity<WF>(wg);
        detail::check_quant_options(o.weight_quant, "Lqer", "options.weight_quant");
        if constexpr (!std::is_same_v<LF, Float32>) {
            check_granularity<LF>(lg);
            detail::check_quant_options(o.factor_quant, "Lqer", "options.factor_quant");
        }
    }
    const LqerOptions& options() const noexcept { return opt_; }
    /// Granularity of Q(W).
    const WG& granularity() const noexcept { return wg_; }
    /// Granularity of the quantized factors (when LF is a format).
    const LG& factor_granularity() const noexcept { return lg_; }

    /// Quantizes W with RTN (WF, WG) and computes the correction. act_scale (size in_features,
    /// e.g. CalibrationStats' max over samples of per-sample mean|x_j|) is required when scaled.
    template <class Derived>
    LqerResult<WF, LF> compute(const Eigen::MatrixBase<Derived>& w, const Eigen::VectorXf* act_scale = nullptr) const {
        RowMatrixXf storage;
        const auto x = detail::as_row_major(w, storage);
        return compute(x, Rtn<WF, WG, Arch>(opt_.weight_quant, wg_).quantize(x), act_scale);
    }

    /// Correction of a GPTQ result (LoRC on GPTQ). Refuses, with ptq::invalid_argument naming
    /// 'gptq', a result stored in act-order processing order (permuted_storage: its codes are
    /// not in W's column order); quantize with static_groups, or without act_order, instead.
    template <class Derived>
    LqerResult<WF, LF> compute(const Eigen::MatrixBase<Derived>& w, const GptqResult<WF>& gptq,
                               const Eigen::VectorXf* act_scale = nullptr) const {
        if (gptq.permuted_storage)
            detail::throw_invalid("Lqer::compute", "gptq",
                                  "is stored in act-order processing order (permuted_storage): its columns do not "
                                  "match w's; use static_groups or act_order = false");
        return compute(w, gptq.quantized, act_scale);
    }

    /// Correction of an already quantized Q(W) (from RTN, GPTQ, AWQ, ...). qw must be in W's
    /// column order: a GPTQ result with permuted_storage is not (pass the GptqResult itself,
    /// which is checked).
    template <class Derived>
    LqerResult<WF, LF> compute(const Eigen::MatrixBase<Derived>& w, QuantizedMatrix<WF> qw,
                               const Eigen::VectorXf* act_scale = nullptr) const {
        const Eigen::MatrixXf wf = w.template cast<float>();
        if (std::size_t(wf.rows()) != qw.rows() || std::size_t(wf.cols()) != qw.cols())
            detail::throw_invalid("Lqer::compute", "qw", "shape differs from w");
        if (!detail::all_finite(wf)) detail::throw_non_finite("Lqer::compute", "w", "weights");
        detail::check_rank("Lqer::compute", opt_.rank, wf.rows(), wf.cols());
        LqerResult<WF, LF> r;
        r.weight_dequantized = dequantize<WF, Arch>(qw);
        r.weight = std::move(qw);
        const Eigen::MatrixXf e = wf - Eigen::MatrixXf(r.weight_dequantized);
        if (!detail::all_finite(e)) detail::throw_non_finite("Lqer::compute", "qw", "Q(W) dequantizes to NaN/Inf");
        if (opt_.scaled) {
            if (!act_scale)
                detail::throw_invalid("Lqer::compute", "act_scale", "is required for L2QER (scaled = true)");
            if (act_scale->size() != wf.cols())
                detail::throw_invalid("Lqer::compute", "act_scale",
                                      "size " + std::to_string(act_scale->size()) + " != in_features " +
                                          std::to_string(wf.cols()));
            r.scale = detail::l2qer_scale(*act_scale, opt_.scale_floor);
        } else {
            r.scale = Eigen::VectorXf::Ones(wf.cols());
        }
        const Eigen::MatrixXf es = e * r.scale.asDiagonal();
        const TruncatedSvd svd = truncated_svd(es, opt_.rank, opt_.svd, opt_.randomized);
        r.singular_values = svd.S;
        RowMatrixXf a = svd.U;
        RowMatrixXf b = (svd.V * svd.S.asDiagonal()).transpose() * r.scale.cwiseInverse().asDiagonal();
        if constexpr (!std::is_same_v<LF, Float32>) {
            r.A_q = Rtn<LF, LG, Arch>(opt_.factor_quant, lg_).quantize(a, "A");
            r.B_q = Rtn<LF, LG, Arch>(opt_.factor_quant, lg_).quantize(b, "B");
            a = dequantize<LF, Arch>(*r.A_q);
            b = dequantize<LF, Arch>(*r.B_q);
        }
        r.A = std::move(a);
        r.B = std::move(b);
        r.error_before = double(e.norm());
        r.error_after = (e.template cast<double>() - (r.A * r.B).template cast<double>()).norm();
        const double n = double(wf.size());
        double factor_bits = 0.0;
        if constexpr (std::is_same_v<LF, Float32>) {
            factor_bits = 32.0 * double(r.A.size() + r.B.size());
        } else {
            factor_bits = effective_bits(*r.A_q) * double(r.A.size()) + effective_bits(*r.B_q) * double(r.B.size());
        }
        r.effective_bits = n == 0.0 ? 0.0 : effective_bits(r.weight) + factor_bits / n;
        return r;
    }

private:
    LqerOptions opt_;
    WG wg_;
    LG lg_;
};

/// y = Q(W) x + A (B x) for a batch X [tokens x in] (returns [tokens x out]). With an
/// activation format AF (e.g. MxInt<8, 16>, or IntFormat<8, true> per token) the inputs X and
/// the intermediate X B^T are fake-quantized with fake_quantize_activations<AF>, as in the
/// LQER paper's W/A setting; AF = Float32 keeps them in float.
template <class AF = Float32, class Arch = xsimd::default_arch, QuantFormat WF, class LF, class Derived>
RowMatrixXf lqer_forward(const Eigen::MatrixBase<Derived>& x, const LqerResult<WF, LF>& r,
                         const QuantOptions& act = {}) {
    if (x.cols() != r.weight_dequantized.cols())
        detail::throw_invalid("lqer_forward", "x",
                              "has " + std::to_string(x.cols()) + " columns, expected in_features " +
                                  std::to_string(r.weight_dequantized.cols()));
    RowMatrixXf xq = x.template cast<float>();
    if constexpr (!std::is_same_v<AF, Float32>) xq = fake_quantize_activations<AF, Arch>(xq, act);
    RowMatrixXf xb = xq * r.B.transpose();
    if constexpr (!std::is_same_v<AF, Float32>) xb = fake_quantize_activations<AF, Arch>(xb, act);
    RowMatrixXf y = xq * r.weight_dequantized.transpose();
    if (r.rank() > 0) y.noalias() += xb * r.A.transpose();
    return y;
}

}  // namespace ptq
