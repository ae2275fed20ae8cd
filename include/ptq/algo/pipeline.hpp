#pragma once
// Composition of the separable PTQ techniques on one group of linears that read the same
// input (q/k/v, gate/up, or a single linear):  transformation -> clipping -> reconstruction.
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/algo/awq.hpp>
#include <ptq/algo/coordinate_descent.hpp>
#include <ptq/algo/gptaq.hpp>
#include <ptq/algo/gptq.hpp>
#include <ptq/algo/rtn.hpp>
#include <ptq/algo/smooth_quant.hpp>
#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/metric/output_error.hpp>
#include <ptq/quantize.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

/// The transformation step.
enum class Transform : std::uint8_t { none, smooth_quant, awq };
/// The reconstruction step.
enum class Reconstruct : std::uint8_t { rtn, gptq };

/// A recipe: which transformation, which reconstruction, and the options of each step.
/// The order is fixed: the transformation always comes first and the reconstruction works on
/// the transformed weights with the Hessian of the transformed input (the MX paper finds the
/// reverse order harmful; ptq does not offer it).
struct PipelineOptions {
    Transform transform = Transform::none;
    Reconstruct reconstruct = Reconstruct::rtn;
    SmoothQuantOptions smooth_quant{};
    AwqOptions awq{};    ///< AWQ's search; its quant options are also used for RTN after AWQ
    GptqOptions gptq{};  ///< GPTQ's options (its quant options: rounding, clip search, ...)
    QuantOptions rtn{};  ///< RTN's options when there is no AWQ
    /// Coordinate descent after GPTQ (refine_rounding on W diag(s) with H'); 0 passes: off.
    /// Its scale_storage is taken from gptq.quant.
    RefineOptions refine{.passes = 0};
    /// Error-aware calibration (GPTAQ, docs/DESIGN.md §12.7), used when quantize() is given the
    /// fp32 model's inputs x_fp: GPTQ and the refinement run on gptaq_target(W diag(s), D', H')
    /// with D' the cross term of x_fp diag(s)^-1 and x diag(s)^-1. Its percdamp is ignored: the
    /// solve uses gptq.percdamp, GPTQ's own damping.
    GptaqOptions gptaq{};
};

/// The QuantOptions of the quantizer that produces the final codes of recipe `o`, which the
/// RTN baseline (PipelineResult::output_mse_rtn) also uses: gptq.quant when reconstructing
/// with GPTQ, awq.quant for AWQ followed by RTN, rtn otherwise.
inline const QuantOptions& baseline_quant_options(const PipelineOptions& o) noexcept {
    if (o.reconstruct == Reconstruct::gptq) return o.gptq.quant;
    if (o.transform == Transform::awq) return o.awq.quant;
    return o.rtn;
}

/// Result of Pipeline::quantize for a group of linears.
template <QuantFormat F>
struct PipelineResult {
    /// Per-input-channel scales s (all ones without a transformation): the quantized weights
    /// stand for W diag(s) and expect the input X diag(s)^-1 — fold 1/s into the previous op
    /// (fold_into_rmsnorm / fold_into_rows) when deploying.
    Eigen::VectorXf scales;
    std::vector<QuantizedMatrix<F>> quantized;  ///< per linear, in the transformed basis
    /// Per linear, the weights in the original basis, Q(W diag(s)) diag(s)^-1, so that
    /// X W_eff^T = (X diag(s)^-1) Q(W diag(s))^T: drop-in for fake-quantized evaluation.
    std::vector<RowMatrixXf> effective;
    std::vector<GptqResult<F>> gptq;  ///< per linear, when reconstruct == gptq
    /// Per linear: ||X (W - RTN(W))^T||^2 / (tokens*out), RTN of the untransformed W with the
    /// QuantOptions of the quantizer that produced `quantized` (baseline_quant_options), so that
    /// the comparison changes the method only, never the format's options.
    std::vector<double> output_mse_rtn;
    std::vector<double> output_mse;  ///< per linear: ||X (W - W_eff)^T||^2 / (tokens*out)
    float awq_alpha = 0.0f;
};

/// Quantizes groups of linears W_k [out_k x in] that read the calibration input X
/// [tokens x in] with format F at granularity G:
///   1. transformation: SmoothQuant (s from max|X_j| and the group's max|W_:,j|) or AWQ (s from
///      its grid search; AWQ's per-group clipping is kept when reconstructing with RTN);
///   2. reconstruction: RTN, or GPTQ on W diag(s) with H' = 2/n (X diag(s)^-1)^T (X diag(s)^-1)
///      (per-group clipping then comes from GPTQ's own QuantOptions::range).
/// Every step's options are validated at construction.
template <QuantFormat F, class G = default_granularity_t<F>, class Arch = xsimd::default_arch>
class Pipeline {
public:
    explicit Pipeline(const PipelineOptions& o = {}, const G& granularity = {})
        : opt_(o),
          gran_(granularity),
          smooth_quant_(o.smooth_quant),
          awq_(o.awq, granularity),
          gptq_(o.gptq, granularity),
          rtn_(o.rtn, granularity) {
        detail::check_refine_options(o.refine, "Pipeline", "options.refine");
        if (o.refine.passes > 0 && o.refine.refit_scales &&
            !(F::kind == FormatKind::integer || F::kind == FormatKind::integer_min))
            detail::throw_invalid("Pipeline", "options.refine.refit_scales",
                                  std::string("needs an IntFormat or IntMinFormat, got ") + F::name());
        if (!(std::isfinite(o.gptaq.alpha) && o.gptaq.alpha >= 0.0))
            detail::throw_invalid("Pipeline", "options.gptaq.alpha", "must be finite, >= 0");
    }
    const PipelineOptions& options() const noexcept { return opt_; }
    const G& granularity() const noexcept { return gran_; }

    /// x: calibration activations [tokens x in] (any dense Eigen expression); weights: the
    /// linears [out_k x in] reading x.
    template <class DX>
    PipelineResult<F> quantize(const Eigen::MatrixBase<DX>& x_in, std::span<const RowMatrixRef> weights) const {
        RowMatrixXf xs;
        return run(detail::as_row_major(x_in, xs), weights, nullptr);
    }

    /// Error-aware calibration (GPTAQ): as above, with x_fp [tokens x in] the fp32 model's inputs
    /// of the same tokens (x: the quantized model's); needs Reconstruct::gptq. The GPTQ target of
    /// every linear is gptaq_target (options().gptaq); x_fp == x gives the plain result.
    template <class DX, class DF>
    PipelineResult<F> quantize(const Eigen::MatrixBase<DX>& x_in, std::span<const RowMatrixRef> weights,
                               const Eigen::MatrixBase<DF>& x_fp_in) const {
        RowMatrixXf xs, fs;
        const Eigen::Ref<const RowMatrixXf> x_fp = detail::as_row_major(x_fp_in, fs);
        return run(detail::as_row_major(x_in, xs), weights, &x_fp);
    }

private:
    PipelineResult<F> run(const Eigen::Ref<const RowMatrixXf>& x, std::span<const RowMatrixRef> weights,
                          const Eigen::Ref<const RowMatrixXf>* x_fp) const {
        const PipelineOptions& o = opt_;
        detail::check_weights_group("Pipeline::quantize", weights, x.cols());
        if (!detail::all_finite(x)) detail::throw_non_finite("Pipeline::quantize", "x", "calibration activations");
        if (x_fp) {
            if (o.reconstruct != Reconstruct::gptq)
                detail::throw_invalid("Pipeline::quantize", "x_fp", "error-aware calibration needs Reconstruct::gptq");
            if (x_fp->rows() != x.rows() || x_fp->cols() != x.cols())
                detail::throw_invalid("Pipeline::quantize", "x_fp", "must have the shape of x");
            if (!detail::all_finite(*x_fp)) detail::throw_non_finite("Pipeline::quantize", "x_fp", "fp32 activations");
        }
        PipelineResult<F> r;
        r.scales = Eigen::VectorXf::Ones(x.cols());
        std::vector<QuantizedMatrix<F>> awq_q;
        if (o.transform == Transform::smooth_quant) {
            r.scales = smooth_quant_.scales(x.cwiseAbs().colwise().maxCoeff().transpose(), weights);
        } else if (o.transform == Transform::awq) {
            auto a = awq_.compute(x, weights);
            r.scales = a.scales;
            r.awq_alpha = a.alpha;
            awq_q = std::move(a.quantized);
        }
        const Eigen::VectorXf inv = r.scales.cwiseInverse();
        Eigen::MatrixXd h, d;
        if (o.reconstruct == Reconstruct::gptq) {
            // H' = 2/n X'^T X' with X' = X diag(s)^-1, accumulated in double.
            const Eigen::MatrixXd xt = (x * inv.asDiagonal()).template cast<double>();
            h = Eigen::MatrixXd::Zero(x.cols(), x.cols());
            h.selfadjointView<Eigen::Lower>().rankUpdate(xt.transpose(), x.rows() ? 2.0 / double(x.rows()) : 0.0);
            h = h.selfadjointView<Eigen::Lower>();
            if (x_fp) d = asymmetry_cross_term((*x_fp) * inv.asDiagonal(), x * inv.asDiagonal());
        }
        GptaqOptions ga = o.gptaq;
        ga.percdamp = o.gptq.percdamp;
        for (std::size_t k = 0; k < weights.size(); ++k) {
            const RowMatrixXf w = weights[k];
            RowMatrixXf wt = w * r.scales.asDiagonal();
            RowMatrixXf dq;
            if (x_fp) wt = gptaq_target(wt, d, h, ga);
            if (o.reconstruct == Reconstruct::gptq) {
                auto g = gptq_.quantize(wt, h);
                if (o.refine.passes > 0) {  // same storage order; refined codes (and refitted scales)
                    RefineOptions ro = o.refine;
                    ro.scale_storage = o.gptq.quant.scale_storage;
                    auto rr = refine_rounding<F, Arch>(wt, h, g, ro);
                    g.quantized = std::move(rr.quantized);
                    g.dequantized = std::move(rr.dequantized);
                }
                dq = g.dequantized;
                r.quantized.push_back(g.quantized);
                r.gptq.push_back(std::move(g));
            } else if (o.transform == Transform::awq) {
                dq = dequantize<F, Arch>(awq_q[k]);
                r.quantized.push_back(std::move(awq_q[k]));
            } else {
                auto q = rtn_.quantize(wt);
                dq = dequantize<F, Arch>(q);
                r.quantized.push_back(std::move(q));
            }
            r.effective.push_back(dq * inv.asDiagonal());
            r.output_mse.push_back(output_mse(x, w, r.effective.back()));
            r.output_mse_rtn.push_back(
                output_mse(x, w, fake_quantize<F, G, Arch>(w, baseline_quant_options(o), gran_)));
        }
        return r;
    }

    PipelineOptions opt_;
    G gran_;
    SmoothQuant smooth_quant_;
    Awq<F, G, Arch> awq_;
    Gptq<F, G, Arch> gptq_;
    Rtn<F, G, Arch> rtn_;
};

}  // namespace ptq
