#pragma once
// SmoothQuant: migrate activation outliers into the weights with a per-input-channel scale.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>
#include <ptq/parallel.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

/// Options of SmoothQuant. Defaults: alpha 0.5, both maxima clamped to >= 1e-5 (the
/// reference implementation's clamp).
struct SmoothQuantOptions {
    float alpha = 0.5f;       ///< migration strength in [0, 1]
    float min_value = 1e-5f;  ///< floor of max|X_j| and max|W_:,j| before the powers
};

/// Scales and transformed weights of one group of linears that read the same input.
struct SmoothQuantResult {
    /// s_j = max|X_j|^alpha / max_i |W_ij|^(1 - alpha); the weights become W diag(s), the
    /// input X diag(s)^-1 (fold 1/s into the previous op: fold_into_rmsnorm / fold_into_rows).
    Eigen::VectorXf scales;
    std::vector<RowMatrixXf> weights;  ///< W_k diag(s), in the order given
};

namespace detail {
/// Column-wise max |W_:,j| over all the linears of a group. The row-major weights are read row
/// by row (contiguous), in fixed chunks of 512 columns run on ptq's threads; max is exact, so
/// the result does not depend on the order or the thread count.
inline Eigen::VectorXf group_weight_absmax(std::span<const RowMatrixRef> ws) {
    const Eigen::Index n = ws.front().cols();
    constexpr Eigen::Index chunk = 512;
    Eigen::VectorXf m = Eigen::VectorXf::Zero(n);
    parallel_for(std::size_t((n + chunk - 1) / chunk), [&](std::size_t task) {
        const Eigen::Index c0 = Eigen::Index(task) * chunk, len = std::min(chunk, n - c0);
        auto mc = m.segment(c0, len).transpose().array();
        for (const auto& w : ws)
            for (Eigen::Index r = 0; r < w.rows(); ++r) mc = mc.max(w.row(r).segment(c0, len).array().abs());
    });
    return m;
}
}  // namespace detail

/// SmoothQuant on a group of linears sharing one input (q/k/v, or gate/up). It computes
/// scales and quantizes nothing: no format, granularity or SIMD architecture parameter.
class SmoothQuant {
public:
    /// Throws ptq::invalid_argument naming the invalid option ('options.alpha', ...).
    explicit SmoothQuant(const SmoothQuantOptions& o = {}) : opt_(o) {
        if (!(o.alpha >= 0.0f && o.alpha <= 1.0f))
            detail::throw_invalid("SmoothQuant", "options.alpha", "must be in [0, 1]");
        if (!(o.min_value > 0.0f)) detail::throw_invalid("SmoothQuant", "options.min_value", "must be > 0");
    }
    const SmoothQuantOptions& options() const noexcept { return opt_; }

    /// s_j = max(a_j, m)^alpha / max(w_j, m)^(1 - alpha), a_j = act_absmax_j (per-channel
    /// max|X_j| over calibration tokens, e.g. CalibrationStats), w_j = max over the group's
    /// linears of max_i |W_ij|, m = min_value. Computed in double, stored as float.
    Eigen::VectorXf scales(const Eigen::VectorXf& act_absmax, std::span<const RowMatrixRef> weights) const {
        detail::check_weights_group("SmoothQuant::scales", weights, act_absmax.size());
        if (!detail::all_finite(act_absmax))
            detail::throw_non_finite("SmoothQuant::scales", "act_absmax", "activation maxima");
        if ((act_absmax.array() < 0.0f).any())
            detail::throw_invalid("SmoothQuant::scales", "act_absmax", "must be non-negative");
        const Eigen::VectorXf wmax = detail::group_weight_absmax(weights);
        Eigen::VectorXf s(act_absmax.size());
        const double a = opt_.alpha, m = opt_.min_value;
        for (Eigen::Index j = 0; j < s.size(); ++j)
            s(j) = float(std::pow(std::max(double(act_absmax(j)), m), a) /
                         std::pow(std::max(double(wmax(j)), m), 1.0 - a));
        return s;
    }

    /// Scales and the transformed weights W_k diag(s).
    SmoothQuantResult compute(const Eigen::VectorXf& act_absmax, std::span<const RowMatrixRef> weights) const {
        SmoothQuantResult r;
        r.scales = scales(act_absmax, weights);
        for (const auto& w : weights) r.weights.push_back(w * r.scales.asDiagonal());
        return r;
    }

private:
    SmoothQuantOptions opt_;
};

/// X diag(s)^-1: the input the smoothed weights expect.
inline RowMatrixXf smooth_activations(const Eigen::Ref<const RowMatrixXf>& x, const Eigen::VectorXf& s) {
    if (x.cols() != s.size()) detail::throw_invalid("smooth_activations", "s", "size differs from the columns of x");
    return x * s.cwiseInverse().asDiagonal();
}

/// Folds 1/s into the weight g of the RMSNorm that produces the input: g_j <- g_j / s_j
/// (RMSNorm(x) = g * x / rms(x), so the normalised output is scaled by 1/s exactly as
/// X diag(s)^-1 requires).
inline void fold_into_rmsnorm(Eigen::Ref<Eigen::VectorXf> g, const Eigen::VectorXf& s) {
    if (g.size() != s.size()) detail::throw_invalid("fold_into_rmsnorm", "s", "size differs from the norm weight");
    g.array() /= s.array();
}

/// Folds 1/s into the previous linear whose output j is input channel j of the smoothed
/// group (e.g. v_proj -> o_proj): row j of W_prev is divided by s_j.
inline void fold_into_rows(Eigen::Ref<RowMatrixXf> w_prev, const Eigen::VectorXf& s) {
    if (w_prev.rows() != s.size()) detail::throw_invalid("fold_into_rows", "s", "size differs from the rows of w_prev");
    w_prev = s.cwiseInverse().asDiagonal() * w_prev;
}

}  // namespace ptq
