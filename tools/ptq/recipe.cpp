// Recipe strings: parsing, canonical text, output-format compatibility (see recipe.hpp).
#include "recipe.hpp"

#include "weight_formats.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>

namespace ptq::llama {

namespace {

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
    return s;
}

std::string trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return std::string(s);
}

bool parse_uint(std::string_view s, std::size_t& out) {
    if (s.empty() || s.size() > 9) return false;
    std::size_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<std::size_t>(c - '0');
    }
    out = v;
    return true;
}

bool parse_double(const std::string& s, double& out) {
    if (s.empty()) return false;
    char* end = nullptr;
    out = std::strtod(s.c_str(), &end);
    return end && *end == '\0' && std::isfinite(out);
}

std::string num(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return b;
}

const char* clip_name(ClipKind c) {
    return c == ClipKind::cs_sym ? "cs-sym" : c == ClipKind::cs_asym ? "cs-asym" : "none";
}

// Every key with its values and default, in the order of the help text.
struct KeyHelp {
    const char* key;
    const char* values;
    const char* meaning;
};
constexpr KeyHelp kKeys[] = {
    {"w", "FORMAT[:pc|:gN|:bN]", "weight format and granularity (default int4-asym:g32)"},
    {"a", "none|int8|int4|fp8-e4m3|mxint8-b16|mxint8-b32|mxint8-b128", "activation fake quantization (default none)"},
    {"algo", "[sq|awq+][rtn|gptq][+lqerK|+l2qerK|+lorcK]", "algorithm chain (default rtn)"},
    {"calib", "tinystories|wikitext|FILE", "calibration set (default tinystories, or --calib)"},
    {"calib-tokens", "N", "calibration token budget (default --calib-tokens)"},
    {"seq", "1|0", "sequential calibration (default 1)"},
    {"act-order", "0|1", "GPTQ: columns in descending diag(H) order (default 0)"},
    {"static-groups", "0|1", "GPTQ: group parameters fitted before the column loop (default 0)"},
    {"damp", "F", "GPTQ: damping fraction of mean diag(H) (default 0.01)"},
    {"block", "N", "GPTQ: lazy-batch block size (default 128)"},
    {"refine", "N", "GPTQ: coordinate-descent passes after GPTQ (default 0)"},
    {"refit", "0|1", "refine: least-squares refit of the group scales in each pass, INT formats (default 0)"},
    {"gptaq", "0|1", "GPTQ: error-aware calibration, fit to the fp32 model's outputs (default 0; seq=1)"},
    {"gptaq-alpha", "F", "GPTAQ: fraction of the asymmetry correction, in [0, 1] (default 1)"},
    {"clip", "none|cs-sym|cs-asym", "RTN/GPTQ clipping search (default none: min-max)"},
    {"clip-grid", "N", "clipping search grid (default 20)"},
    {"clip-shrink", "F", "clipping search: largest shrink, in (0, 1] (default 0.5)"},
    {"clip-norm", "F", "clipping search: error norm exponent (default 2)"},
    {"awq-grid", "N", "AWQ: alpha grid size (default 20)"},
    {"awq-duo", "0|1", "AWQ: duo scaling (default 0)"},
    {"awq-clip", "0|1", "AWQ: per-group clipping search (default 1)"},
    {"sq-alpha", "F", "SmoothQuant migration strength in [0, 1] (default 0.5)"},
    {"lr-format", "mxint8-b16|fp16", "low-rank factor storage (default: mxint8-b16 for lqer/l2qer, fp16 for lorc)"},
    {"scale", "f32|f16|bf16", "scale storage type (default f32; f16 when writing gguf/gptq/awq/compressed-tensors)"},
    {"rot", "none|hadamard|random[:SEED]",
     "rotate the model first: norms folded, residual rotated (default none, seed 0)"},
    {"rot-online", "0|1", "online rotation of the w2 input, in memory only; 32 hidden^2 bits if random (default 0)"},
    {"preset", "w4|w4-gguf|w4-awq|w3|w2|w3pc",
     "a measured best recipe of a bit width / file format (keys beside it override its values)"},
};

// The best recipe per bit width found by `ptq table --search` on stories260K, then with refit=1
// added where it measured better (w4, w3 with refine=4, w2; docs/SEARCH.md) (tuned on
// tinystories/valid.txt, calibrated on the first 1,800 stories of train_calib.txt; the numbers
// are in docs/RESULTS.md).
struct Preset {
    const char* name;
    const char* recipe;
};
constexpr Preset kPresets[] = {
    {"w4",
     "w=int4-asym:g32,algo=gptq,calib-tokens=32768,act-order=1,damp=0.003,refine=8,refit=1,gptaq=1,gptaq-alpha=0.75"},
    // The best measured 4-bit recipes with contiguous groups, for the formats that cannot store
    // act-order's group index: GGUF Q4_1 (fp16 minimum; w4 without act-order measured better
    // than with static groups) and AWQ (integer zero point; w4 with static groups).
    {"w4-gguf", "w=int4-min:g32,algo=gptq,calib-tokens=32768,damp=0.003,refine=8,refit=1,gptaq=1,gptaq-alpha=0.75"},
    {"w4-awq",
     "w=int4-asym:g32,algo=gptq,calib-tokens=32768,act-order=1,static-groups=1,damp=0.003,refine=8,refit=1,gptaq=1,"
     "gptaq-alpha=0.75"},
    {"w3",
     "w=int3-asym:g32,algo=awq+gptq,calib-tokens=32768,act-order=1,static-groups=1,damp=0.1,refine=4,refit=1,gptaq=1,"
     "clip=cs-asym,clip-shrink=0.7"},
    {"w2",
     "w=int2-asym:g32,algo=awq+gptq,calib-tokens=32768,act-order=1,damp=0.03,refine=8,refit=1,gptaq=1,clip=cs-asym"},
    {"w3pc", "w=int3-asym:pc,algo=awq+gptq,calib-tokens=32768,act-order=1,damp=0.1,gptaq=1,clip=cs-asym"},
};

std::string key_list() {
    std::vector<std::string> k;
    for (const auto& h : kKeys) k.emplace_back(h.key);
    return join(k);
}

}  // namespace

std::string recipe_help() {
    std::string s;
    for (const auto& h : kKeys) {
        char line[256];
        std::snprintf(line, sizeof line, "  %-14s %-34s %s\n", h.key, h.values, h.meaning);
        s += line;
    }
    s += "  weight formats: " + join(supported_weight_formats()) + "\n";
    return s;
}

std::string RecipeSpec::weight_text() const {
    if (is_mx()) {
        const auto p = weight.rfind("-b");
        std::string base = weight.substr(0, p);
        if (base == "mxfp4-e2m1") base = "mxfp4";
        return base + ":b" + weight.substr(p + 2);
    }
    return weight + ":" + (group == 0 ? std::string("pc") : "g" + std::to_string(group));
}

std::string RecipeSpec::algo_text() const {
    std::string s;
    if (transform == TransformKind::smooth_quant) s = "sq";
    if (transform == TransformKind::awq) s = "awq";
    if (reconstruct == ReconstructKind::gptq) s += s.empty() ? "gptq" : "+gptq";
    if (s.empty()) s = "rtn";
    const char* lr = low_rank == LowRankKind::lqer    ? "lqer"
                     : low_rank == LowRankKind::l2qer ? "l2qer"
                     : low_rank == LowRankKind::lorc  ? "lorc"
                                                      : nullptr;
    if (lr) s += std::string("+") + lr + std::to_string(rank);
    return s;
}

std::string RecipeSpec::low_rank_format() const {
    if (!lr_format.empty()) return lr_format;
    return low_rank == LowRankKind::lorc ? "fp16" : "mxint8-b16";
}

std::string RecipeSpec::text() const {
    const RecipeSpec d;
    std::string s = "w=" + weight_text() + ",a=" + act + ",algo=" + algo_text() + ",calib=" + calib;
    if (calib_tokens) s += ",calib-tokens=" + std::to_string(*calib_tokens);
    if (sequential) s += *sequential ? ",seq=1" : ",seq=0";
    if (act_order != d.act_order) s += ",act-order=1";
    if (static_groups != d.static_groups) s += ",static-groups=1";
    if (damp != d.damp) s += ",damp=" + num(damp);
    if (block != d.block) s += ",block=" + std::to_string(block);
    if (refine != d.refine) s += ",refine=" + std::to_string(refine);
    if (refit != d.refit) s += ",refit=1";
    if (gptaq != d.gptaq) s += ",gptaq=1";
    if (gptaq_alpha != d.gptaq_alpha) s += ",gptaq-alpha=" + num(gptaq_alpha);
    if (clip != d.clip) s += std::string(",clip=") + clip_name(clip);
    if (clip_grid != d.clip_grid) s += ",clip-grid=" + std::to_string(clip_grid);
    if (clip_shrink != d.clip_shrink) s += ",clip-shrink=" + num(clip_shrink);
    if (clip_norm != d.clip_norm) s += ",clip-norm=" + num(clip_norm);
    if (awq_grid != d.awq_grid) s += ",awq-grid=" + std::to_string(awq_grid);
    if (awq_duo != d.awq_duo) s += ",awq-duo=1";
    if (awq_clip != d.awq_clip) s += ",awq-clip=0";
    if (sq_alpha != d.sq_alpha) s += ",sq-alpha=" + num(sq_alpha);
    if (!lr_format.empty()) s += ",lr-format=" + lr_format;
    if (scale) s += ",scale=" + *scale;
    if (rot != d.rot || rot_seed != d.rot_seed)
        s += std::string(",rot=") + rotation_kind_name(rot) +
             (rot_seed != d.rot_seed ? ":" + std::to_string(rot_seed) : "");
    if (rot_online != d.rot_online) s += ",rot-online=1";
    return s;
}

bool RecipeSpec::needs_calibration() const {
    return transform != TransformKind::none || reconstruct == ReconstructKind::gptq || low_rank == LowRankKind::l2qer;
}

RecipeSpec RecipeSpec::rtn_baseline() const {
    RecipeSpec b;
    b.weight = weight;
    b.group = group;
    b.act = act;
    b.calib = calib;
    b.scale = scale;
    b.rot = rot;
    b.rot_seed = rot_seed;
    b.rot_online = rot_online;
    return b;
}

std::vector<std::string> supported_weight_formats() {
    std::vector<std::string> v;
    auto add = [&]<class F>() {
        v.push_back(F::name());
        return false;
    };
    for_each_type(IntOtherFormats{}, add);
    for_each_type(Int34Formats{}, add);
    for_each_type(FloatMinFormats{}, add);
    for_each_type(MxFormats{}, add);
    return v;
}

std::vector<std::string> supported_activation_formats() {
    std::vector<std::string> v{"none"};
    for_each_type(ActFormats{}, [&]<class F>() {
        v.push_back(act_name<F>());
        return false;
    });
    return v;
}

namespace {

void parse_weight(RecipeSpec& r, const std::string& val, const std::function<RecipeError(const std::string&)>& fail) {
    const auto colon = val.find(':');
    std::string fmt = val.substr(0, colon), gran = colon == std::string::npos ? "" : val.substr(colon + 1);
    if (fmt.rfind("mx", 0) == 0) {
        // MX: block from ":bN" / ":gN" or a "-bN" suffix; default 32.
        std::size_t block = 0;
        if (const auto b = fmt.rfind("-b"); b != std::string::npos) {
            if (!parse_uint(std::string_view(fmt).substr(b + 2), block)) throw fail("bad MX block in '" + fmt + "'");
            fmt.resize(b);
        }
        if (!gran.empty()) {
            std::size_t g = 0;
            if (!((gran[0] == 'b' || gran[0] == 'g') && parse_uint(std::string_view(gran).substr(1), g)))
                throw fail("an MX format takes its block as :b16 / :b32, not '" + gran + "'");
            if (block && g != block) throw fail("two different MX blocks in '" + val + "'");
            block = g;
        }
        if (!block) block = 32;
        if (fmt == "mxfp4") fmt = "mxfp4-e2m1";
        r.weight = fmt + "-b" + std::to_string(block);
        r.group = block;
    } else {
        r.weight = fmt;
        if (gran.empty() || gran == "pc" || gran == "per-channel") {
            r.group = 0;
        } else {
            std::size_t g = 0;
            if (gran[0] != 'g' || !parse_uint(std::string_view(gran).substr(1), g) || g == 0)
                throw fail("granularity '" + gran + "' is not pc, per-channel or gN (N >= 1), e.g. g32");
            r.group = g;
        }
    }
    const auto sup = supported_weight_formats();
    if (std::find(sup.begin(), sup.end(), r.weight) == sup.end())
        throw fail("unsupported weight format '" + r.weight + "'; supported: " + join(sup) +
                   " (MX formats written e.g. mxint4:b32, mxfp4:b32)");
}

void parse_algo(RecipeSpec& r, const std::string& val, const std::function<RecipeError(const std::string&)>& fail) {
    int stage = 0;  // 0 start, 1 after transform, 2 after reconstruct, 3 after low-rank
    std::size_t p = 0;
    while (p <= val.size()) {
        std::size_t e = val.find('+', p);
        if (e == std::string::npos) e = val.size();
        const std::string t = val.substr(p, e - p);
        p = e + 1;
        if (t.empty()) throw fail("empty step in algo '" + val + "'");
        if (stage == 3) throw fail("nothing may follow the low-rank step in algo '" + val + "'");
        if (t == "sq" || t == "awq") {
            if (stage >= 1)
                throw fail("the transformation '" + t +
                           "' must come first and only once (reconstruction after transformation; the reverse "
                           "order is not offered)");
            r.transform = t == "sq" ? TransformKind::smooth_quant : TransformKind::awq;
            stage = 1;
        } else if (t == "rtn" || t == "gptq") {
            if (stage >= 2) throw fail("two reconstruction steps in algo '" + val + "'");
            r.reconstruct = t == "gptq" ? ReconstructKind::gptq : ReconstructKind::rtn;
            stage = 2;
        } else {
            LowRankKind lk = LowRankKind::none;
            std::string_view digits;
            for (auto [pre, kind] : {std::pair{"l2qer", LowRankKind::l2qer}, std::pair{"lqer", LowRankKind::lqer},
                                     std::pair{"lorc", LowRankKind::lorc}})
                if (t.rfind(pre, 0) == 0) {
                    lk = kind;
                    digits = std::string_view(t).substr(std::char_traits<char>::length(pre));
                    break;
                }
            std::size_t rank = 0;
            if (lk == LowRankKind::none)
                throw fail("unknown algorithm step '" + t + "'; steps: [sq|awq]+[rtn|gptq]+[lqerK|l2qerK|lorcK]");
            if (!parse_uint(digits, rank) || rank == 0 || rank > 4096)
                throw fail("low-rank step '" + t + "' needs a rank, e.g. " + t.substr(0, t.size() - digits.size()) +
                           "8");
            r.low_rank = lk;
            r.rank = static_cast<int>(rank);
            stage = 3;
        }
    }
}

}  // namespace

std::vector<std::string> preset_names() {
    std::vector<std::string> v;
    for (const auto& p : kPresets) v.emplace_back(p.name);
    return v;
}

std::string preset_recipe(std::string_view name) {
    for (const auto& p : kPresets)
        if (name == p.name) return p.recipe;
    throw RecipeError("unknown preset '" + std::string(name) + "'; presets: " + join(preset_names()));
}

std::string default_preset(OutputFormat f) {
    switch (f) {
        case OutputFormat::gguf: return "w4-gguf";
        case OutputFormat::awq: return "w4-awq";
        case OutputFormat::none:
        case OutputFormat::gptq:
        case OutputFormat::compressed_tensors: return "w4";
    }
    return "w4";
}

std::string default_preset_help() {
    std::string s;
    for (OutputFormat f : {OutputFormat::gguf, OutputFormat::gptq, OutputFormat::awq, OutputFormat::compressed_tensors})
        s += std::string(s.empty() ? "" : ", ") + output_format_name(f) + ": preset=" + default_preset(f);
    return s;
}

RecipeSpec parse_recipe(std::string_view text) {
    RecipeSpec r;
    const std::string src(text);
    const std::function<RecipeError(const std::string&)> fail = [&](const std::string& msg) {
        return RecipeError("bad recipe '" + src + "': " + msg);
    };
    if (trim(text).empty()) throw fail("empty recipe (example: w=int4-asym:g32,a=none,algo=gptq,calib=tinystories)");
    // A preset gives the starting values; the other keys override them.
    for (std::size_t pos = 0; pos <= text.size();) {
        std::size_t end = text.find(',', pos);
        if (end == std::string_view::npos) end = text.size();
        const std::string item = trim(text.substr(pos, end - pos));
        if (item.rfind("preset", 0) == 0 && item.find('=') != std::string::npos &&
            trim(std::string_view(item).substr(0, item.find('='))) == "preset") {
            const std::string name = trim(std::string_view(item).substr(item.find('=') + 1));
            if (std::none_of(std::begin(kPresets), std::end(kPresets), [&](const Preset& p) { return name == p.name; }))
                throw fail("unknown preset '" + name + "'; presets: " + join(preset_names()));
            r = parse_recipe(preset_recipe(name));
            break;
        }
        pos = end + 1;
    }
    std::map<std::string, bool> seen;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t end = text.find(',', pos);
        if (end == std::string_view::npos) end = text.size();
        const std::string item = trim(text.substr(pos, end - pos));
        pos = end + 1;
        if (item.empty()) throw fail("empty item between commas");
        const auto eq = item.find('=');
        if (eq == std::string::npos) throw fail("item '" + item + "' is not key=value (keys: " + key_list() + ")");
        const std::string key = trim(std::string_view(item).substr(0, eq)),
                          val = trim(std::string_view(item).substr(eq + 1));
        if (val.empty()) throw fail("key '" + key + "' has an empty value");
        if (std::none_of(std::begin(kKeys), std::end(kKeys), [&](const KeyHelp& h) { return key == h.key; }))
            throw fail("unknown key '" + key + "' (keys: " + key_list() + ")");
        if (seen[key]) throw fail("key '" + key + "' given twice");
        seen[key] = true;
        auto boolean = [&]() {
            if (val != "0" && val != "1") {
                if (key == "seq") throw fail("seq must be 1 (sequential) or 0 (non-sequential), not '" + val + "'");
                throw fail(key + " must be 0 or 1, not '" + val + "'");
            }
            return val == "1";
        };
        auto count = [&](std::size_t lo, std::size_t hi) {
            std::size_t n = 0;
            if (!parse_uint(val, n) || n < lo || n > hi)
                throw fail(key + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                           "], not '" + val + "'");
            return n;
        };
        auto real = [&](double lo, double hi, bool open_lo) {
            double v = 0;
            if (!parse_double(val, v) || v > hi || (open_lo ? v <= lo : v < lo))
                throw fail(key + " must be a number in " + (open_lo ? "(" : "[") + num(lo) + ", " + num(hi) +
                           "], not '" + val + "'");
            return v;
        };
        if (key == "w") parse_weight(r, val, fail);
        else if (key == "a") {
            const auto sup = supported_activation_formats();
            if (std::find(sup.begin(), sup.end(), val) == sup.end())
                throw fail("unsupported activation format '" + val + "'; supported: " + join(sup));
            r.act = val;
        } else if (key == "algo") parse_algo(r, val, fail);
        else if (key == "calib") r.calib = val;
        else if (key == "calib-tokens") r.calib_tokens = count(2, 100'000'000);
        else if (key == "seq") r.sequential = boolean();
        else if (key == "act-order") r.act_order = boolean();
        else if (key == "static-groups") r.static_groups = boolean();
        else if (key == "damp") r.damp = real(0.0, 10.0, true);
        else if (key == "block") r.block = count(1, 1'000'000);
        else if (key == "refine") r.refine = static_cast<int>(count(0, 1000));
        else if (key == "refit") r.refit = boolean();
        else if (key == "gptaq") r.gptaq = boolean();
        else if (key == "gptaq-alpha") r.gptaq_alpha = real(0.0, 1.0, false);
        else if (key == "preset") {  // applied before the loop
        } else if (key == "clip") {
            if (val == "none") r.clip = ClipKind::none;
            else if (val == "cs-sym") r.clip = ClipKind::cs_sym;
            else if (val == "cs-asym") r.clip = ClipKind::cs_asym;
            else throw fail("clip must be none, cs-sym or cs-asym, not '" + val + "'");
        } else if (key == "clip-grid") r.clip_grid = static_cast<int>(count(1, 10'000));
        else if (key == "clip-shrink") r.clip_shrink = static_cast<float>(real(0.0, 1.0, true));
        else if (key == "clip-norm") r.clip_norm = static_cast<float>(real(0.0, 100.0, true));
        else if (key == "awq-grid") r.awq_grid = static_cast<int>(count(1, 10'000));
        else if (key == "awq-duo") r.awq_duo = boolean();
        else if (key == "awq-clip") r.awq_clip = boolean();
        else if (key == "sq-alpha") r.sq_alpha = static_cast<float>(real(0.0, 1.0, false));
        else if (key == "lr-format") {
            if (val != "mxint8-b16" && val != "fp16")
                throw fail("lr-format must be mxint8-b16 or fp16, not '" + val + "'");
            r.lr_format = val;
        } else if (key == "scale") {
            if (val != "f32" && val != "f16" && val != "bf16")
                throw fail("scale must be f32, f16 or bf16, not '" + val + "'");
            r.scale = val;
        } else if (key == "rot") {
            const auto colon = val.find(':');
            const std::string kind = val.substr(0, colon);
            if (kind == "none") r.rot = RotationKind::none;
            else if (kind == "hadamard") r.rot = RotationKind::hadamard;
            else if (kind == "random") r.rot = RotationKind::random;
            else throw fail("rot must be none, hadamard or random (with an optional :SEED), not '" + val + "'");
            if (colon != std::string::npos) {
                std::size_t seed = 0;
                if (r.rot == RotationKind::none || !parse_uint(std::string_view(val).substr(colon + 1), seed))
                    throw fail("rot seed must follow hadamard: or random: as an integer of at most 9 digits, not '" +
                               val + "'");
                r.rot_seed = seed;
            }
        } else if (key == "rot-online") r.rot_online = boolean();
        if (end == text.size()) break;
    }
    if ((r.refine > 0 || r.gptaq) && r.reconstruct != ReconstructKind::gptq)
        throw fail(std::string(r.refine > 0 ? "refine" : "gptaq") + " needs GPTQ (algo=gptq or algo=awq+gptq)");
    if (r.gptaq && r.sequential && !*r.sequential)
        throw fail("gptaq=1 needs the sequential protocol (seq=1): without it the fp32 and quantized inputs agree");
    if (r.lr_format.size() && r.low_rank == LowRankKind::none)
        throw fail("lr-format is given but algo has no low-rank step (+lqerK, +l2qerK, +lorcK)");
    if (r.refit && (r.refine == 0 || r.is_mx() || r.weight.rfind("int", 0) != 0))
        throw fail("refit=1 needs refine=N (N >= 1) and an integer format (w=intN-sym|asym|min), not '" + r.weight +
                   "'");
    if (r.clip == ClipKind::cs_asym && (r.is_mx() || r.weight.find("-sym") != std::string::npos))
        throw fail("clip=cs-asym needs an asymmetric integer format (w=intN-asym), not '" + r.weight + "'");
    return r;
}

std::optional<OutputFormat> parse_output_format(std::string_view s) {
    if (s == "none") return OutputFormat::none;
    if (s == "gguf") return OutputFormat::gguf;
    if (s == "gptq") return OutputFormat::gptq;
    if (s == "awq") return OutputFormat::awq;
    if (s == "compressed-tensors") return OutputFormat::compressed_tensors;
    return std::nullopt;
}

const char* output_format_name(OutputFormat f) {
    switch (f) {
        case OutputFormat::none: return "none";
        case OutputFormat::gguf: return "gguf";
        case OutputFormat::gptq: return "gptq";
        case OutputFormat::awq: return "awq";
        case OutputFormat::compressed_tensors: return "compressed-tensors";
    }
    return "?";
}

RecipeSpec resolve_for_output(const RecipeSpec& in, OutputFormat f) {
    if (f == OutputFormat::none) return in;
    RecipeSpec r = in;
    const std::string fmt = output_format_name(f);
    auto fail = [&](const std::string& what) {
        return RecipeError("recipe '" + in.text() + "': " + what + " cannot be written as " + fmt);
    };
    if (r.act != "none")
        throw fail("a=" + r.act + " (activation quantization is not stored in a weight file; use a=none)");
    if (r.low_rank != LowRankKind::none)
        throw fail("the low-rank step +" + r.algo_text().substr(r.algo_text().rfind('+') + 1));
    if (r.rot_online)
        throw fail(
            "rot-online=1 (an online transform of the w2 input is not stored in a model file; use rot-online=0)");
    const std::string& w = r.weight;
    bool ok = false;
    std::string needs;
    switch (f) {
        case OutputFormat::gguf:
            ok = (r.group == 32 && (w == "int8-sym" || w == "int4-sym" || w == "int4-min")) || w == "mxfp4-e2m1-b32";
            needs = "gguf holds int8-sym:g32 (Q8_0), int4-sym:g32 (Q4_0), int4-min:g32 (Q4_1) and mxfp4:b32 (MXFP4)";
            break;
        case OutputFormat::gptq:
            ok = !r.is_mx() &&
                 (w.rfind("int2-", 0) == 0 || w.rfind("int3-", 0) == 0 || w.rfind("int4-", 0) == 0 ||
                  w.rfind("int8-", 0) == 0) &&
                 w.find("-min") == std::string::npos;
            needs = "gptq holds int2/int3/int4/int8 -sym or -asym, per channel or in groups";
            break;
        case OutputFormat::awq:
            ok = w == "int4-sym" || w == "int4-asym";
            needs = "awq holds int4-sym or int4-asym, per channel or in groups";
            break;
        case OutputFormat::compressed_tensors:
            ok = (!r.is_mx() && w.rfind("int", 0) == 0 && w.find("-min") == std::string::npos) || w == "fp8-e4m3" ||
                 w == "mxfp4-e2m1-b32";
            needs = "compressed-tensors holds intN -sym/-asym, fp8-e4m3 and mxfp4:b32";
            break;
        case OutputFormat::none: break;
    }
    if (!ok) throw fail("w=" + r.weight_text() + " (" + needs + ")");
    if (r.act_order && r.reconstruct == ReconstructKind::gptq && !r.static_groups && r.group != 0 &&
        (f == OutputFormat::gguf || f == OutputFormat::awq ||
         (f == OutputFormat::compressed_tensors && r.weight == "mxfp4-e2m1-b32")))
        throw fail("act-order=1 (permuted groups; add static-groups=1 or use gptq / compressed-tensors)");
    const bool fp16_scales = !r.is_mx() && r.weight != "fp8-e4m3";
    if (fp16_scales) {
        if (!r.scale) r.scale = "f16";
        else if (*r.scale != "f16") throw fail("scale=" + *r.scale + " (the file stores fp16 scales: use scale=f16)");
    }
    return r;
}

}  // namespace ptq::llama
