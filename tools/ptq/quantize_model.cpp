// quantize_model: dispatch of the recipe's weight format to its family's translation unit,
// and the activation quantizers.
#include "quantize_model.hpp"

#include "quantize_families.hpp"
#include "rotation.hpp"
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

QuantizedModel quantize_model(Model fp32, const RecipeSpec& r, CalibData* calib, const QuantizeOptions& options) {
    if (r.rot_online && options.output != OutputFormat::none)
        throw RecipeError("recipe '" + r.text() + "': rot-online=1 cannot be written as " +
                          output_format_name(options.output) + " (no model file holds an online transform)");
    // The rotation comes first: calibration, every algorithm and the activation quantizers see
    // the rotated fp32 model (which computes the same function). A lazily read model has each
    // layer rotated as it is read.
    const Rotation rot = make_rotation(fp32.config, r.rot, r.rot_seed, r.rot_online);
    QuantizeOptions o = options;
    CalibData rotated_calib;
    if (!rot.empty()) {
        if (o.load_layer) {
            rotate_ends(fp32, rot);
            o.load_layer = [read = std::move(o.load_layer), &rot, c = fp32.config](int l, Layer& L) {
                read(l, L);
                rotate_layer(L, c, rot);
            };
        } else {
            rotate_model(fp32, rot);
        }
        if (calib) {  // the cached fp32 captures belong to the unrotated model
            rotated_calib.name = calib->name;
            rotated_calib.seqs = calib->seqs;
            rotated_calib.tokens = calib->tokens;
            calib = &rotated_calib;
        }
    }
    QuantizedModel out;
    if (!detail::quantize_any_format(std::move(fp32), r, calib, o, out)) {
        std::string sup;
        for (const auto& s : supported_weight_formats()) sup += (sup.empty() ? "" : ", ") + s;
        throw RecipeError("unsupported weight format '" + r.weight + "'; supported: " + sup);
    }
    // The online matrix is not in the weights: its storage counts in the bits per weight.
    if (rot.metadata_bits > 0 && out.report.weights > 0)
        out.report.effective_bits += rot.metadata_bits / static_cast<double>(out.report.weights);
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
