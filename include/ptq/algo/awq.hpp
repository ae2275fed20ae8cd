#pragma once
// AWQ: activation-aware weight quantization (scale search + per-group clipping search).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/algo/rtn.hpp>
#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/kernels.hpp>
#include <ptq/metric/output_error.hpp>
#include <ptq/observe/clip_search.hpp>
#include <ptq/parallel.hpp>
#include <ptq/quantize.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

/// Options of Awq. Plain struct; defaults follow llm-awq.
struct AwqOptions {
    int grid = 20;             ///< alpha = i / grid, i = 0 .. grid-1 (alpha = 0 is plain RTN)
    bool duo_scaling = false;  ///< AutoAWQ's s = mean|X_j|^a / (w_mean_j^(1-a) + 1e-4)
    float min_scale = 1e-4f;   ///< s is clamped to >= min_scale before normalisation
    bool clip_search = true;   ///< per-(row, group) clipping search after the scale search
    /// Grid of the clipping search (p = 1 - i / grid, i = 0 .. max_shrink * grid), llm-awq's
    /// clamp to [-p max|w|, p max|w|]; `norm` is not used (candidates are scored on the output).
    ClipSearch clip{
        .grid = 20, .max_shrink = 0.5f, .norm = 2.0f, .separate_bounds = false, .bounds = ClipBounds::clamp_absmax};
    /// Quantizer options; AWQ does not widen [min, max] to contain 0 (llm-awq's convention).
    QuantOptions quant = [] {
        QuantOptions q;
        q.widen_to_zero = false;
        return q;
    }();
};

/// Result of Awq::compute for a group of linears sharing one input.
template <QuantFormat F>
struct AwqResult {
    /// Per-input-channel scales s: the weights are quantized as Q(W diag(s)) and the input must
    /// be X diag(s)^-1 (fold 1/s into the previous op with fold_into_rmsnorm / fold_into_rows).
    Eigen::VectorXf scales;
    float alpha = 0.0f;                         ///< the chosen alpha
    std::vector<double> output_mse_per_alpha;   ///< output MSE (see Awq) for alpha = i / grid (entry 0 = RTN)
    double output_mse_rtn = 0.0;                ///< output MSE of plain RTN (s = 1, no clipping)
    double output_mse_scaled = 0.0;             ///< at the chosen alpha, before clipping
    double output_mse = 0.0;                    ///< final (after clipping, if it helped)
    bool clipped = false;                       ///< whether the clipping result was kept
    std::vector<QuantizedMatrix<F>> quantized;  ///< Q(W_k diag(s)), in the order given
    /// Effective weights in the original basis, Q(W_k diag(s)) diag(s)^-1: X W_eff^T equals
    /// (X diag(s)^-1) Q(W_k diag(s))^T. Use these for fake-quantized evaluation.
    std::vector<RowMatrixXf> effective;
};

/// AWQ for format F at granularity G on a group of linears reading the same input X.
///
/// 1. x_j = mean_t |X_tj|; for alpha = i/grid: s = max(x^alpha, min_scale) (duo scaling:
///    max(x^alpha / (w_mean^(1-alpha) + 1e-4), min_scale) with w_mean_j = mean over rows of
///    |W_ij| / max |W_i,group(j)|), s <- s / sqrt(max(s) * min(s));
///    loss(alpha) = sum_k ||X W_k^T - X (Q(W_k diag(s)) diag(s)^-1)^T||^2 / (tokens * sum out_k).
///    The first alpha with the lowest loss wins; without duo scaling alpha = 0 gives s = 1,
///    i.e. RTN, so the search never does worse than RTN on the calibration loss (with duo
///    scaling alpha = 0 gives s = 1 / (w_mean + 1e-4), normalised: not RTN, so no such bound).
///    AwqResult::output_mse_rtn is always plain RTN's loss (s = 1).
/// 2. Clipping (not for PerTensor): for every (row, group) of W diag(s), clip_search (observe/
///    clip_search.hpp) over the ranges [max(lo, -p amax), min(hi, p amax)], p = 1, 1 - 1/clip.grid,
///    ... (ClipBounds::clamp_absmax), scored on the group output error ||X_g' (w_g - Q_p(w_g))||^2
///    (X' = X diag(s)^-1, via the Gram matrix X_g'^T X_g', all rows of a column group at once);
///    the clipped result is kept only if the total loss does not increase (per-group errors
///    ignore cross-group terms).
/// Cost: grid quantizations + grid GEMMs of tokens x in x out; clipping: (1 + steps) *
/// out * in * group flops (a per-channel group is the whole row: expensive for large layers).
template <QuantFormat F, class G = default_granularity_t<F>, class Arch = xsimd::default_arch>
class Awq {
public:
    /// Throws ptq::invalid_argument naming the invalid option ('options.grid', ...).
    explicit Awq(const AwqOptions& o = {}, const G& g = {}) : opt_(o), gran_(g) {
        check_granularity<F>(g);
        detail::check_quant_options(o.quant, "Awq", "options.quant");
        if (o.grid < 1) detail::throw_invalid("Awq", "options.grid", "must be at least 1");
        detail::check_clip(o.clip, "Awq", "options.clip");
        if (!(o.min_scale > 0.0f)) detail::throw_invalid("Awq", "options.min_scale", "must be > 0");
    }
    const AwqOptions& options() const noexcept { return opt_; }
    const G& granularity() const noexcept { return gran_; }

    /// x: calibration activations [tokens x in] (any dense Eigen expression); weights: the
    /// linears [out_k x in] reading x.
    template <class DX>
    AwqResult<F> compute(const Eigen::MatrixBase<DX>& x_in, std::span<const RowMatrixRef> weights) const {
        RowMatrixXf xs;
        const auto x = detail::as_row_major(x_in, xs);
        detail::check_weights_group("Awq::compute", weights, x.cols());
        if (!detail::all_finite(x)) detail::throw_non_finite("Awq::compute", "x", "calibration activations");
        if (x.rows() == 0) detail::throw_invalid("Awq::compute", "x", "has no tokens");
        const Eigen::Index in = x.cols();
        double denom = 0.0;
        for (const auto& w : weights) denom += double(x.rows()) * double(w.rows());
        if (denom == 0.0) denom = 1.0;

        const Eigen::ArrayXd x_mean = x.cwiseAbs().template cast<double>().colwise().mean().transpose().array();
        const Eigen::ArrayXd w_mean = opt_.duo_scaling ? weight_mean(weights, in) : Eigen::ArrayXd::Ones(in);

        AwqResult<F> res;
        res.output_mse_per_alpha.resize(std::size_t(opt_.grid));
        // The grid points in parallel (ptq::set_num_threads), the best chosen in grid order.
        detail::parallel_for(std::size_t(opt_.grid), [&](std::size_t i) {
            const double a = double(i) / double(opt_.grid);
            res.output_mse_per_alpha[i] = loss_of(x, weights, scales_for(a, x_mean, w_mean), nullptr) / denom;
        });
        double best = std::numeric_limits<double>::infinity();
        for (int i = 0; i < opt_.grid; ++i) {
            const double a = double(i) / double(opt_.grid), l = res.output_mse_per_alpha[std::size_t(i)];
            if (l < best) {
                best = l;
                res.alpha = float(a);
                res.scales = scales_for(a, x_mean, w_mean);
            }
        }
        // Plain RTN is alpha = 0 only without duo scaling (see above).
        res.output_mse_rtn = opt_.duo_scaling ? loss_of(x, weights, Eigen::VectorXf::Ones(in), nullptr) / denom
                                              : res.output_mse_per_alpha[0];
        res.output_mse_scaled = best;
        res.output_mse = best;

        // Quantize W diag(s) with min-max (or QuantOptions::range) parameters, then clip.
        std::vector<RowMatrixXf> scaled;
        for (const auto& w : weights) scaled.push_back(w * res.scales.asDiagonal());
        for (const auto& w : scaled) res.quantized.push_back(Rtn<F, G, Arch>(opt_.quant, gran_).quantize(w));
        if (opt_.clip_search && !std::is_same_v<G, PerTensor>) {
            const RowMatrixXf xsc = x * res.scales.cwiseInverse().asDiagonal();
            std::vector<QuantizedMatrix<F>> clipped;
            for (const auto& w : scaled) clipped.push_back(clip(xsc, w));
            const double l = loss_of(x, weights, res.scales, &clipped) / denom;
            if (l <= res.output_mse) {
                res.output_mse = l;
                res.quantized = std::move(clipped);
                res.clipped = true;
            }
        }
        const Eigen::VectorXf inv = res.scales.cwiseInverse();
        for (const auto& q : res.quantized) res.effective.push_back(dequantize<F, Arch>(q) * inv.asDiagonal());
        return res;
    }

private:
    Eigen::VectorXf scales_for(double a, const Eigen::ArrayXd& x_mean, const Eigen::ArrayXd& w_mean) const {
        Eigen::ArrayXd s = x_mean.pow(a);
        if (opt_.duo_scaling) s = s / (w_mean.pow(1.0 - a) + 1e-4);
        s = s.max(double(opt_.min_scale));
        s /= std::sqrt(s.maxCoeff() * s.minCoeff());
        return s.cast<float>().matrix();
    }

    // w_mean_j = mean over all rows of all linears of |W_ij| / max |W_i, group of j|.
    Eigen::ArrayXd weight_mean(std::span<const RowMatrixRef> weights, Eigen::Index in) const {
        Eigen::ArrayXd acc = Eigen::ArrayXd::Zero(in);
        double rows = 0.0;
        for (const auto& w : weights) {
            const GroupLayout l = resolve_layout<F>(gran_, std::size_t(w.rows()), std::size_t(in));
            for (Eigen::Index r = 0; r < w.rows(); ++r)
                for (std::size_t g = 0; g < l.col_groups(); ++g) {
                    const auto b = Eigen::Index(l.group_begin(g)), n = Eigen::Index(l.group_end(g)) - b;
                    const auto seg = w.row(r).segment(b, n).cwiseAbs();
                    const double m = seg.maxCoeff();
                    if (m > 0.0) acc.segment(b, n) += seg.template cast<double>().array().transpose() / m;
                }
            rows += double(w.rows());
        }
        return rows > 0.0 ? Eigen::ArrayXd(acc / rows) : Eigen::ArrayXd::Ones(in);
    }

    // sum_k ||X (W_k - W_eff,k)^T||^2 with W_eff = Q(W diag(s)) diag(s)^-1 (quantized with
    // the RTN of opt_.quant unless `given` supplies the quantized matrices).
    template <class XM>
    double loss_of(const XM& x, std::span<const RowMatrixRef> weights, const Eigen::VectorXf& s,
                   const std::vector<QuantizedMatrix<F>>* given) const {
        double total = 0.0;
        const Eigen::VectorXf inv = s.cwiseInverse();
        for (std::size_t k = 0; k < weights.size(); ++k) {
            const RowMatrixRef& w = weights[k];
            const RowMatrixXf d = given ? RowMatrixXf(w - dequantize<F, Arch>((*given)[k]) * inv.asDiagonal())
                                        : scaled_residual(w, s, inv);
            total += output_squared_error(x, d);
        }
        return total;
    }

    // W - RTN(W diag(s)) diag(s)^-1.
    RowMatrixXf scaled_residual(const RowMatrixRef& w, const Eigen::VectorXf& s, const Eigen::VectorXf& inv) const {
        return w - fake_quantize<F, G, Arch>(w * s.asDiagonal(), opt_.quant, gran_) * inv.asDiagonal();
    }

    // Per-(row, group) clipping search of w (already scaled) against activations xs (scaled):
    // one clip_search per column group over all its rows, scored on the output error.
    QuantizedMatrix<F> clip(const RowMatrixXf& xs, const RowMatrixXf& w) const {
        using Params = typename F::Params;
        const GroupLayout l = resolve_layout<F>(gran_, std::size_t(w.rows()), std::size_t(w.cols()));
        std::vector<Params> params(l.num_groups());
        const std::size_t ng = l.col_groups();
        detail::parallel_for(ng, [&](std::size_t g) {  // column groups in parallel
            std::vector<Params> best(std::size_t(w.rows()));
            std::vector<RangeStats> stats(std::size_t(w.rows()));
            const auto b = Eigen::Index(l.group_begin(g)), n = Eigen::Index(l.group_end(g)) - b;
            const Eigen::MatrixXf gram = xs.middleCols(b, n).transpose() * xs.middleCols(b, n);
            const RowMatrixXf wg = w.middleCols(b, n);
            for (Eigen::Index r = 0; r < w.rows(); ++r)
                stats[std::size_t(r)] = range_of(wg.data() + r * n, std::size_t(n));
            RowMatrixXf d(w.rows(), n);
            std::vector<std::uint8_t> codes(static_cast<std::size_t>(n));
            // errors[r] = d_r Gram d_r^T with d_r = w_r - Q(w_r) under candidates[r].
            const auto output_error = [&](std::span<const Params> cand, std::span<double> errors) {
                for (Eigen::Index r = 0; r < w.rows(); ++r) {
                    const float* row = wg.data() + r * n;
                    const Params& pc = cand[std::size_t(r)];
                    kernel::quantize_group<F, Arch>(row, std::size_t(n), pc, opt_.quant.rounding, codes.data());
                    for (Eigen::Index c = 0; c < n; ++c) d(r, c) = row[c] - F::dequantize(codes[std::size_t(c)], pc);
                }
                const Eigen::VectorXd e = ((d * gram).cwiseProduct(d)).rowwise().sum().template cast<double>();
                for (Eigen::Index r = 0; r < w.rows(); ++r) errors[std::size_t(r)] = e(r);
            };
            clip_search<F>(stats, opt_.clip, opt_.quant, output_error, best);
            for (std::size_t r = 0; r < best.size(); ++r) params[r * ng + g] = best[r];
        });
        return encode_with_params<F, Arch>(w.data(), l, params, opt_.quant.rounding);
    }

    AwqOptions opt_;
    G gran_;
};

}  // namespace ptq
