#pragma once
// Activation quantizers for weight-and-activation settings (W8A8, W4A8, ...).
//  - dynamic per token:  fake_quantize_activations<F>(X)  (per row, or per MX block for MX
//    formats) — parameters computed from each batch at run time;
//  - static per tensor:  StaticActivationQuantizer<F> below — parameters fixed from
//    calibration data and applied unchanged to every later batch.
#include <span>
#include <string>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/format/range.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/kernels.hpp>
#include <ptq/quantize.hpp>

namespace ptq {

/// Dynamic per-token fake quantization of activations X [tokens x in_features]: one set of
/// parameters per row (PerToken), or per MX block of the row for MX formats.
template <QuantFormat F, class Arch = xsimd::default_arch, class Derived>
RowMatrixXf fake_quantize_activations(const Eigen::MatrixBase<Derived>& x, const QuantOptions& o = {}) {
    if constexpr (F::is_mx) return fake_quantize<F, default_granularity_t<F>, Arch>(x, o);
    else return fake_quantize<F, PerToken, Arch>(x, o);
}

/// Static per-tensor activation quantizer: observe() calibration batches (their min/max over
/// all elements is accumulated; order and split do not matter), then apply() quantizes any
/// batch with the one parameter set F::make_params(calibrated range, options). Values beyond
/// the calibrated range clamp to the extreme codes. NaN/Inf: observe() and apply() follow
/// QuantOptions::non_finite (error by default; propagate leaves observe's range unchanged and
/// makes apply() output NaN for the whole batch).
template <QuantFormat F, class Arch = xsimd::default_arch>
class StaticActivationQuantizer {
    static_assert(!F::is_mx,
                  "ptq::StaticActivationQuantizer: MX formats scale each block dynamically; "
                  "use fake_quantize_activations<MxFormat>");

public:
    /// Throws ptq::invalid_argument ('options.range') for RangeMethod::mse_search: the clipping
    /// search needs the data of every group, and the calibration keeps only their range.
    explicit StaticActivationQuantizer(const QuantOptions& o = {}) : opt_(o) {
        if (o.range == RangeMethod::mse_search)
            detail::throw_invalid("StaticActivationQuantizer", "options.range",
                                  "mse_search is not available: the parameters come from the calibrated min-max range");
    }
    const QuantOptions& options() const noexcept { return opt_; }

    template <class Derived>
    void observe(const Eigen::MatrixBase<Derived>& x) {
        RowMatrixXf s;
        const auto xr = detail::as_row_major(x, s);
        RangeStats st = kernel::range<Arch>(xr.data(), std::size_t(xr.size()));
        if (st.non_finite && opt_.non_finite == NonFinite::error)
            detail::throw_non_finite("StaticActivationQuantizer::observe", "x", "calibration batch");
        st.non_finite = false;
        range_.merge(st);
    }
    bool calibrated() const noexcept { return !range_.empty(); }
    const RangeStats& range() const noexcept { return range_; }
    /// The parameters every batch is quantized with.
    typename F::Params params() const {
        if (!calibrated())
            detail::throw_invalid("StaticActivationQuantizer::params", "this", "observe() was never called");
        return F::make_params(range_, opt_);
    }

    /// Fake-quantizes x [tokens x in] with the calibrated parameters.
    template <class Derived>
    RowMatrixXf apply(const Eigen::MatrixBase<Derived>& x) const {
        RowMatrixXf s;
        const auto xr = detail::as_row_major(x, s);
        const GroupLayout layout = PerTensor{}.layout(std::size_t(xr.rows()), std::size_t(xr.cols()));
        auto p = params();
        if (!detail::all_finite(xr)) {
            if (opt_.non_finite == NonFinite::error)
                detail::throw_non_finite("StaticActivationQuantizer::apply", "x", "batch");
            p = F::nan_params();
        }
        return dequantize<F, Arch>(
            encode_with_params<F, Arch>(xr.data(), layout, std::span<const typename F::Params>(&p, 1), opt_.rounding));
    }

private:
    QuantOptions opt_;
    RangeStats range_{};
};

}  // namespace ptq
