// quantize_model: dispatch of the recipe's weight format to its family's translation unit,
// and the activation quantizers.
#include "quantize_model.hpp"

#include "quantize_families.hpp"
#include "weight_formats.hpp"

#include <ptq/algo/activation.hpp>

namespace ptq::llama {

ActivationQuantizer make_activation_quantizer(const std::string& act) {
    if (act == "none") return {};
    ActivationQuantizer q;
    for_each_type(ActFormats{}, [&]<class F>() {
        if (act_name<F>() != act) return false;
        q = [](RowMatrix& x) { x = fake_quantize_activations<F>(x); };
        return true;
    });
    if (!q) {
        std::string sup;
        for (const auto& s : supported_activation_formats()) sup += (sup.empty() ? "" : ", ") + s;
        throw RecipeError("unknown activation format '" + act + "'; supported: " + sup);
    }
    return q;
}

QuantizedModel quantize_model(const Model& fp32, const RecipeSpec& r, CalibData* calib, const QuantizeOptions& o) {
    QuantizedModel out;
    if (!detail::quantize_any_format(fp32, r, calib, o, out)) {
        std::string sup;
        for (const auto& s : supported_weight_formats()) sup += (sup.empty() ? "" : ", ") + s;
        throw RecipeError("unsupported weight format '" + r.weight + "'; supported: " + sup);
    }
    return out;
}

Model quantize_model(const Model& fp32, const RecipeSpec& r, CalibData* calib, bool sequential, QuantReport* report,
                     const std::function<void(const std::string&)>& progress) {
    QuantizeOptions o;
    o.sequential = sequential;
    if (progress) o.progress = [&](int l, int n) { progress("layer " + std::to_string(l) + "/" + std::to_string(n)); };
    QuantizedModel q = quantize_model(fp32, r, calib, o);
    if (report) *report = q.report;
    return std::move(q.model);
}

}  // namespace ptq::llama
