#pragma once
// RTN: round-to-nearest quantization of a matrix in any format and granularity.
#include <cstddef>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/observe/clip_search.hpp>
#include <ptq/quantize.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

/// Round-to-nearest quantizer of format F at granularity G (an Eigen-decomposition-style
/// object: options in the constructor, quantize() to run).
///
/// The same numerics as ptq::quantize (quantize.hpp): per group (see GroupLayout), range =
/// kernel::range (min/max of finite values) or the MSE clipping search (QuantOptions::range);
/// parameters = F::make_params; codes = F::quantize (formula, rounding and clamp range in the
/// format's comment) packed in the canonical layout of kernel/packing.hpp. NaN/Inf:
/// QuantOptions::non_finite (error by default: a ptq::non_finite_error naming the argument,
/// row and group). The input is read as a row-major float matrix (copied if it is not one).
template <QuantFormat F, class G = default_granularity_t<F>, class Arch = xsimd::default_arch>
class Rtn {
public:
    /// Throws ptq::invalid_argument for an invalid option or granularity (the data are checked
    /// by quantize()).
    explicit Rtn(const QuantOptions& options = {}, const G& granularity = {}) : opt_(options), gran_(granularity) {
        check_granularity<F>(granularity);
        detail::check_quant_options(options, "Rtn", "options");
    }
    const QuantOptions& options() const noexcept { return opt_; }
    const G& granularity() const noexcept { return gran_; }

    template <class Derived>
    QuantizedMatrix<F> quantize(const Eigen::MatrixBase<Derived>& w, const char* arg_name = "w") const {
        return detail::round_to_nearest<F, Arch>(w, opt_, gran_, arg_name);
    }

private:
    QuantOptions opt_;
    G gran_;
};

}  // namespace ptq
