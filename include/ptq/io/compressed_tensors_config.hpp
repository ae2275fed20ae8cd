#pragma once
// The `quantization_config` of a compressed-tensors checkpoint (llm-compressor's output, read
// by vLLM): one config group of Linear weights.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <ptq/error.hpp>

namespace ptq::io {

/// compressed-tensors storage formats ptq writes.
///  - pack_quantized: integer codes of 1..8 bits as a dense int32 bit stream (weight_packed)
///  - mxfp4_pack_quantized: E2M1 nibbles in bytes, E8M0 scale bytes per 32 (weight_packed U8)
///  - float_quantized: FP8 E4M3 weight with a float scale
enum class CtFormat : std::uint8_t { pack_quantized, mxfp4_pack_quantized, float_quantized };

/// "pack-quantized", "mxfp4-pack-quantized", "float-quantized".
inline const char* ct_format_name(CtFormat f) noexcept {
    switch (f) {
        case CtFormat::pack_quantized: return "pack-quantized";
        case CtFormat::mxfp4_pack_quantized: return "mxfp4-pack-quantized";
        case CtFormat::float_quantized: return "float-quantized";
    }
    return "?";
}

/// Which weights share a scale: the whole tensor, one output row, or groups along in.
enum class CtStrategy : std::uint8_t { tensor, channel, group };

/// The `weights` QuantizationArgs of the config group (the fields the layout uses).
struct CtWeightArgs {
    int num_bits = 4;
    bool is_float = false;  ///< "type": "float" (else "int")
    bool symmetric = true;
    CtStrategy strategy = CtStrategy::group;
    std::int64_t group_size = 128;  ///< strategy group only (channel: -1, tensor: none)
    bool actorder_group = false;    ///< "actorder": "group": weight_g_idx maps columns to groups
};

/// The config of a checkpoint whose Linear layers all use one scheme.
struct CtConfig {
    CtFormat format = CtFormat::pack_quantized;
    CtWeightArgs weights;
    std::vector<std::string> ignore{"lm_head"};  ///< layers left unquantized
};

/// {"quant_method": "compressed-tensors", "format", "quantization_status": "compressed",
///  "config_groups": {"group_0": {"targets": ["Linear"], "weights": {...}, "input_activations":
///  null, "output_activations": null, "format"}}, "ignore"}. weights: num_bits, type,
/// symmetric, strategy, group_size (null for tensor, -1 for channel), actorder ("group" or
/// null), dynamic false, observer "minmax"; mxfp4 adds scale_dtype / zp_dtype "torch.uint8"
/// as compressed-tensors' MXFP4 preset; asymmetric int adds zp_dtype "torch.int8".
inline nlohmann::json ct_config_to_json(const CtConfig& c) {
    const CtWeightArgs& w = c.weights;
    nlohmann::json weights{{"num_bits", w.num_bits},
                           {"type", w.is_float ? "float" : "int"},
                           {"symmetric", w.symmetric},
                           {"strategy", w.strategy == CtStrategy::tensor    ? "tensor"
                                        : w.strategy == CtStrategy::channel ? "channel"
                                                                            : "group"},
                           {"group_size", nullptr},
                           {"block_structure", nullptr},
                           {"actorder", nullptr},
                           {"dynamic", false},
                           {"observer", "minmax"},
                           {"scale_dtype", nullptr},
                           {"zp_dtype", nullptr}};
    if (w.strategy == CtStrategy::channel) weights["group_size"] = -1;
    if (w.strategy == CtStrategy::group) weights["group_size"] = w.group_size;
    if (w.actorder_group) weights["actorder"] = "group";
    if (c.format == CtFormat::mxfp4_pack_quantized) {
        weights["scale_dtype"] = "torch.uint8";
        weights["zp_dtype"] = "torch.uint8";
    }
    if (!w.symmetric) weights["zp_dtype"] = "torch.int8";
    const char* fmt = ct_format_name(c.format);
    return nlohmann::json{
        {"quant_method", "compressed-tensors"},
        {"format", fmt},
        {"quantization_status", "compressed"},
        {"config_groups",
         {{"group_0",
           {{"targets", {"Linear"}},
            {"weights", weights},
            {"input_activations", nullptr},
            {"output_activations", nullptr},
            {"format", fmt}}}}},
        {"ignore", c.ignore},
    };
}

/// Reads a compressed-tensors config with a single config group. Required: quant_method
/// "compressed-tensors", format (one of CtFormat; the group's own "format" wins if present),
/// config_groups with exactly one group holding "weights" {num_bits 1..8, type "int" |
/// "float", symmetric (default true), strategy "tensor" | "channel" | "group" (or inferred from
/// group_size as compressed-tensors does: null -> tensor, -1 -> channel, > 0 -> group),
/// group_size, actorder (null | false | "weight" | "static" -> none; "group" | "dynamic" |
/// true -> group)}. Other keys are ignored. Throws ptq::invalid_argument naming the field.
inline CtConfig ct_config_from_json(const nlohmann::json& j) {
    const char* fn = "io::ct_config_from_json";
    auto str_at = [&](const nlohmann::json& o, const char* k, const char* name) {
        auto it = o.find(k);
        if (it == o.end() || !it->is_string()) ptq::detail::throw_invalid(fn, name, "is missing or not a string");
        return it->get<std::string>();
    };
    if (!j.is_object()) ptq::detail::throw_invalid(fn, "config", "is not a JSON object");
    if (str_at(j, "quant_method", "quant_method") != "compressed-tensors")
        ptq::detail::throw_invalid(fn, "quant_method", "is not \"compressed-tensors\"");
    auto groups = j.find("config_groups");
    if (groups == j.end() || !groups->is_object() || groups->size() != 1)
        ptq::detail::throw_invalid(fn, "config_groups", "must hold exactly one config group");
    const nlohmann::json& grp = groups->begin().value();
    if (!grp.is_object()) ptq::detail::throw_invalid(fn, "config_groups", "group is not an object");
    std::string fmt = grp.contains("format") && grp["format"].is_string() ? grp["format"].get<std::string>()
                                                                          : str_at(j, "format", "format");
    CtConfig c;
    if (fmt == "pack-quantized") c.format = CtFormat::pack_quantized;
    else if (fmt == "mxfp4-pack-quantized") c.format = CtFormat::mxfp4_pack_quantized;
    else if (fmt == "float-quantized" || fmt == "naive-quantized") c.format = CtFormat::float_quantized;
    else ptq::detail::throw_invalid(fn, "format", "'" + fmt + "' is not a supported compressed-tensors format");
    auto wit = grp.find("weights");
    if (wit == grp.end() || !wit->is_object()) ptq::detail::throw_invalid(fn, "weights", "is missing");
    const nlohmann::json& w = *wit;
    auto nb = w.find("num_bits");
    if (nb == w.end() || !nb->is_number_integer() || nb->get<std::int64_t>() < 1 || nb->get<std::int64_t>() > 8)
        ptq::detail::throw_invalid(fn, "num_bits", "is missing or not an integer in [1, 8]");
    c.weights.num_bits = int(nb->get<std::int64_t>());
    const std::string type = w.contains("type") ? str_at(w, "type", "type") : std::string("int");
    if (type != "int" && type != "float")
        ptq::detail::throw_invalid(fn, "type", "'" + type + "' is not \"int\" or \"float\"");
    c.weights.is_float = type == "float";
    if (auto s = w.find("symmetric"); s != w.end()) {
        if (!s->is_boolean()) ptq::detail::throw_invalid(fn, "symmetric", "is not a boolean");
        c.weights.symmetric = s->get<bool>();
    }
    std::int64_t gs = 0;
    bool has_gs = false;
    if (auto g = w.find("group_size"); g != w.end() && !g->is_null()) {
        if (!g->is_number_integer()) ptq::detail::throw_invalid(fn, "group_size", "is not an integer");
        gs = g->get<std::int64_t>();
        has_gs = true;
    }
    std::string strategy;
    if (auto s = w.find("strategy"); s != w.end() && !s->is_null()) strategy = str_at(w, "strategy", "strategy");
    else strategy = !has_gs ? "tensor" : gs == -1 ? "channel" : gs > 0 ? "group" : "invalid";
    if (strategy == "tensor") c.weights.strategy = CtStrategy::tensor;
    else if (strategy == "channel") c.weights.strategy = CtStrategy::channel;
    else if (strategy == "group") c.weights.strategy = CtStrategy::group;
    else ptq::detail::throw_invalid(fn, "strategy", "'" + strategy + "' is not tensor, channel or group");
    if (c.weights.strategy == CtStrategy::group && !(has_gs && gs > 0))
        ptq::detail::throw_invalid(fn, "group_size", "strategy group needs a positive group_size");
    c.weights.group_size = c.weights.strategy == CtStrategy::group ? gs : -1;
    if (auto a = w.find("actorder"); a != w.end() && !a->is_null()) {
        if (a->is_boolean()) c.weights.actorder_group = a->get<bool>();
        else {
            const std::string s = str_at(w, "actorder", "actorder");
            if (s == "group" || s == "dynamic") c.weights.actorder_group = true;
            else if (s != "weight" && s != "static")
                ptq::detail::throw_invalid(fn, "actorder", "'" + s + "' is not group, weight, dynamic or static");
        }
    }
    if (auto ig = j.find("ignore"); ig != j.end() && ig->is_array()) {
        c.ignore.clear();
        for (const auto& s : *ig)
            if (s.is_string()) c.ignore.push_back(s.get<std::string>());
    }
    return c;
}

}  // namespace ptq::io
