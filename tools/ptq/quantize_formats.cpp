// quantize_model's instantiations for every weight format (weight_formats.hpp). One
// translation unit on purpose: measured with GCC 12 at -O3, a TU instantiating 4 formats costs
// 159 CPU-s and one instantiating 5 costs 167 CPU-s, i.e. about 8 s per format on top of about
// 125 s shared by all formats (header parsing, Eigen's GEMM / Cholesky / SVD kernels), which
// every additional TU would pay again.
#include "model_quantizer.hpp"

namespace ptq::llama::detail {

bool quantize_any_format(Model&& fp32, const RecipeSpec& r, CalibData* calib, const QuantizeOptions& o,
                         QuantizedModel& out) {
    // quantize_family moves from fp32 only when r.weight is one of its formats.
    return quantize_family(IntOtherFormats{}, std::move(fp32), r, calib, o, out) ||
           quantize_family(Int34Formats{}, std::move(fp32), r, calib, o, out) ||
           quantize_family(FloatMinFormats{}, std::move(fp32), r, calib, o, out) ||
           quantize_family(MxFormats{}, std::move(fp32), r, calib, o, out);
}

}  // namespace ptq::llama::detail
