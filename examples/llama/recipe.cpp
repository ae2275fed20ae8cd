// The one translation unit that instantiates ptq's algorithms for the llama harness: a fixed
// list of weight formats (a small type-list dispatcher maps the recipe's format name to the
// compile-time type) times two granularity kinds (the format's MX block, or a runtime
// PerGroup<dynamic_group> whose size is in_features for per-channel). See recipe.hpp.
#include "llama/recipe.hpp"

#include <ptq/ptq.hpp>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace ptq::llama {

namespace {

template <class... Ts>
struct TypeList {};

/// Calls f.template operator()<T>() for each T until one returns true; returns whether one did.
template <class... Ts, class F>
bool for_each_type(TypeList<Ts...>, F&& f) {
    return (f.template operator()<Ts>() || ...);
}

// The supported weight formats (each is instantiated with RTN, GPTQ, AWQ, SmoothQuant and two
// LQER variants: keep this list short, compile time grows linearly with it).
using WeightFormats = TypeList<IntFormat<2, true>, IntFormat<2, false>, IntFormat<3, true>, IntFormat<3, false>,
                               IntFormat<4, true>, IntFormat<4, false>, IntFormat<5, false>, IntFormat<8, true>,
                               IntFormat<8, false>, Fp8E4M3, MxInt<3, 32>, MxInt<4, 16>, MxInt<4, 32>, MxFp<2, 1, 32>>;

using ActFormats = TypeList<IntFormat<8, true>, Fp8E4M3, MxInt<8, 16>, MxInt<8, 32>, MxInt<8, 128>>;

/// Activation-format name as written in recipes: "int8" for per-token INT8, otherwise the
/// format's own name ("fp8-e4m3", "mxint8-b16").
template <class F>
std::string act_name() {
    if constexpr (std::is_same_v<F, IntFormat<8, true>>) return "int8";
    else return F::name();
}

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
    if (s.empty() || s.size() > 6) return false;
    std::size_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<std::size_t>(c - '0');
    }
    out = v;
    return true;
}

// Linear groups that share an input, in the order of the sequential protocol.
constexpr int kGroupCount = 4;
constexpr int kGroupFirst[kGroupCount] = {0, 3, 4, 5};  // wq, wo, w1, w2
const std::vector<std::vector<int>> kGroupMembers = {{0, 1, 2}, {3}, {4, 6}, {5}};

}  // namespace

// ---------------------------------------------------------------------------------------------
// RecipeSpec
// ---------------------------------------------------------------------------------------------

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

std::string RecipeSpec::text() const {
    std::string s = "w=" + weight_text() + ",a=" + act + ",algo=" + algo_text() + ",calib=" + calib;
    if (sequential) s += *sequential ? ",seq=1" : ",seq=0";
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
    return b;
}

std::vector<std::string> supported_weight_formats() {
    std::vector<std::string> v;
    for_each_type(WeightFormats{}, [&]<class F>() {
        v.push_back(F::name());
        return false;
    });
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

ActivationQuantizer make_activation_quantizer(const std::string& act) {
    if (act == "none") return {};
    ActivationQuantizer q;
    for_each_type(ActFormats{}, [&]<class F>() {
        if (act_name<F>() != act) return false;
        q = [](RowMatrix& x) { x = fake_quantize_activations<F>(x); };
        return true;
    });
    if (!q)
        throw RecipeError("unknown activation format '" + act +
                          "'; supported: " + join(supported_activation_formats()));
    return q;
}

RecipeSpec parse_recipe(std::string_view text) {
    RecipeSpec r;
    const std::string src(text);
    auto fail = [&](const std::string& msg) -> RecipeError { return RecipeError("bad recipe '" + src + "': " + msg); };
    if (trim(text).empty()) throw fail("empty recipe (example: w=int4-asym:g32,a=none,algo=gptq,calib=tinystories)");
    bool seen[5] = {};
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t end = text.find(',', pos);
        if (end == std::string_view::npos) end = text.size();
        const std::string item = trim(text.substr(pos, end - pos));
        pos = end + 1;
        if (item.empty()) throw fail("empty item between commas");
        const auto eq = item.find('=');
        if (eq == std::string::npos) throw fail("item '" + item + "' is not key=value (keys: w, a, algo, calib, seq)");
        const std::string key = trim(std::string_view(item).substr(0, eq)),
                          val = trim(std::string_view(item).substr(eq + 1));
        if (val.empty()) throw fail("key '" + key + "' has an empty value");
        int k = key == "w" ? 0 : key == "a" ? 1 : key == "algo" ? 2 : key == "calib" ? 3 : key == "seq" ? 4 : -1;
        if (k < 0) throw fail("unknown key '" + key + "' (keys: w, a, algo, calib, seq)");
        if (seen[k]) throw fail("key '" + key + "' given twice");
        seen[k] = true;
        if (k == 0) {
            const auto colon = val.find(':');
            std::string fmt = val.substr(0, colon), gran = colon == std::string::npos ? "" : val.substr(colon + 1);
            if (fmt.rfind("mx", 0) == 0) {
                // MX: block from ":bN" / ":gN" or a "-bN" suffix; default 32.
                std::size_t block = 0;
                if (const auto b = fmt.rfind("-b"); b != std::string::npos) {
                    if (!parse_uint(std::string_view(fmt).substr(b + 2), block))
                        throw fail("bad MX block in '" + fmt + "'");
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
        } else if (k == 1) {
            const auto sup = supported_activation_formats();
            if (std::find(sup.begin(), sup.end(), val) == sup.end())
                throw fail("unsupported activation format '" + val + "'; supported: " + join(sup));
            r.act = val;
        } else if (k == 2) {
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
                                   "' must come first and only once (reconstruction after " +
                                   "transformation; the reverse order is not offered)");
                    r.transform = t == "sq" ? TransformKind::smooth_quant : TransformKind::awq;
                    stage = 1;
                } else if (t == "rtn" || t == "gptq") {
                    if (stage >= 2) throw fail("two reconstruction steps in algo '" + val + "'");
                    r.reconstruct = t == "gptq" ? ReconstructKind::gptq : ReconstructKind::rtn;
                    stage = 2;
                } else {
                    LowRankKind lk = LowRankKind::none;
                    std::string_view num;
                    for (auto [pre, kind] :
                         {std::pair{"l2qer", LowRankKind::l2qer}, std::pair{"lqer", LowRankKind::lqer},
                          std::pair{"lorc", LowRankKind::lorc}})
                        if (t.rfind(pre, 0) == 0) {
                            lk = kind;
                            num = std::string_view(t).substr(std::char_traits<char>::length(pre));
                            break;
                        }
                    std::size_t rank = 0;
                    if (lk == LowRankKind::none)
                        throw fail("unknown algorithm step '" + t +
                                   "'; steps: [sq|awq]+[rtn|gptq]+[lqerK|l2qerK|lorcK]");
                    if (!parse_uint(num, rank) || rank == 0 || rank > 4096)
                        throw fail("low-rank step '" + t + "' needs a rank, e.g. " +
                                   t.substr(0, t.size() - num.size()) + "8");
                    r.low_rank = lk;
                    r.rank = static_cast<int>(rank);
                    stage = 3;
                }
            }
        } else if (k == 3) {
            r.calib = val;
        } else {
            if (val != "0" && val != "1")
                throw fail("seq must be 1 (sequential) or 0 (non-sequential), not '" + val + "'");
            r.sequential = val == "1";
        }
        if (end == text.size()) break;
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// Calibration
// ---------------------------------------------------------------------------------------------

struct CalibData::Fp32Captures {
    /// [layer][group]: the fp32 model's inputs of that group, all calibration tokens.
    std::vector<std::array<RowMatrix, kGroupCount>> x;
};

CalibData load_calibration(const std::string& set, const std::filesystem::path& data_dir, const Tokenizer& tok,
                           int seq_len, std::size_t token_budget) {
    std::filesystem::path file = set;
    if (set == "tinystories") file = data_dir / "tinystories" / "train_calib.txt";
    else if (set == "wikitext") file = data_dir / "wikitext2" / "test.txt";
    CalibData c;
    c.name = set;
    c.seqs = calibration_sequences(tok, read_text_file(file), seq_len, token_budget);
    for (const auto& s : c.seqs) c.tokens += s.size();
    if (c.tokens == 0) throw std::runtime_error("calibration set '" + set + "' (" + file.string() + ") gave no tokens");
    return c;
}

namespace {

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Inputs of group g of layer l of model m for every calibration state (x = layer-l input).
RowMatrix capture_group(const Model& m, int l, int g, const std::vector<RowMatrix>& states, std::size_t tokens) {
    const Eigen::Index in = g == 3 ? m.config.hidden_dim : m.config.dim;
    RowMatrix X(static_cast<Eigen::Index>(tokens), in);
    Eigen::Index row = 0;
    detail::ForwardScratch scratch;
    const ActivationHook hook = [&](int, std::string_view name, const RowMatrix& a) {
        if (linear_index(name) == kGroupFirst[g]) {
            X.middleRows(row, a.rows()) = a;
            row += a.rows();
        }
    };
    for (const RowMatrix& st : states) {
        RowMatrix x = st;
        layer_forward(m, l, x, hook, kGroupFirst[g], &scratch);
    }
    return X;
}

std::vector<RowMatrix> initial_states(const Model& m, const CalibData& c) {
    std::vector<RowMatrix> s;
    s.reserve(c.seqs.size());
    for (const auto& q : c.seqs) s.push_back(embed(m, q));
    return s;
}

void advance_states(const Model& m, int l, std::vector<RowMatrix>& states) {
    detail::ForwardScratch scratch;
    for (RowMatrix& x : states) layer_forward(m, l, x, {}, -1, &scratch);
}

const CalibData::Fp32Captures& fp32_captures(const Model& fp32, CalibData& c) {
    if (c.fp32) return *c.fp32;
    auto caps = std::make_shared<CalibData::Fp32Captures>();
    std::vector<RowMatrix> states = initial_states(fp32, c);
    for (int l = 0; l < fp32.config.n_layers; ++l) {
        std::array<RowMatrix, kGroupCount> layer;
        for (int g = 0; g < kGroupCount; ++g)
            layer[static_cast<std::size_t>(g)] = capture_group(fp32, l, g, states, c.tokens);
        caps->x.push_back(std::move(layer));
        advance_states(fp32, l, states);
    }
    c.fp32 = std::move(caps);
    return *c.fp32;
}

template <class F>
struct ModelQuantizer {
    using G = std::conditional_t<F::is_mx, default_granularity_t<F>, PerGroup<dynamic_group>>;

    ModelQuantizer(const RecipeSpec& spec, QuantReport& report) : r(spec), rep(report) {}

    const RecipeSpec& r;
    QuantReport& rep;
    double bits_sum = 0.0, ratio_sum = 0.0;
    int ratio_count = 0;
    std::vector<float> alphas;
    int gptq_retries = 0;

    G granularity(Eigen::Index cols) const {
        if constexpr (F::is_mx) return G{};
        else {
            const auto c = static_cast<std::size_t>(std::max<Eigen::Index>(cols, 1));
            return G(r.group == 0 ? c : std::min(r.group, c));
        }
    }

    /// Quantizes group g of layer l of m (whose weights there are still fp32) on inputs X.
    void quantize_group(Model& m, int l, int g, const RowMatrix* X, const std::vector<std::size_t>& seq_lens) {
        Layer& L = m.layers[static_cast<std::size_t>(l)];
        const auto& members = kGroupMembers[static_cast<std::size_t>(g)];
        std::vector<RowMatrixRef> ws;
        for (int idx : members) ws.emplace_back(L.linear(kLinearNames[idx]));
        const Eigen::Index in = ws.front().cols();
        const G gran = granularity(in);
        Eigen::VectorXf s = Eigen::VectorXf::Ones(in);
        std::vector<QuantizedMatrix<F>> qs;
        if (r.transform == TransformKind::none && r.reconstruct == ReconstructKind::rtn) {
            for (const auto& w : ws) qs.push_back(Rtn<F, G>(QuantOptions{}, gran).quantize(w));
        } else {
            PipelineOptions po;
            po.transform = r.transform == TransformKind::awq            ? Transform::awq
                           : r.transform == TransformKind::smooth_quant ? Transform::smooth_quant
                                                                        : Transform::none;
            po.reconstruct = r.reconstruct == ReconstructKind::gptq ? Reconstruct::gptq : Reconstruct::rtn;
            auto res = Pipeline<F, G>(po, gran).quantize(*X, ws);
            s = res.scales;
            for (std::size_t k = 0; k < ws.size(); ++k) {
                if (res.output_mse_rtn[k] > 0.0) {
                    ratio_sum += res.output_mse[k] / res.output_mse_rtn[k];
                    ++ratio_count;
                }
                if (!res.gptq.empty()) {
                    if (res.gptq[k].permuted_storage)
                        throw std::logic_error(
                            "GPTQ returned permuted storage without act-order");  // never with defaults
                    gptq_retries += res.gptq[k].diagnostics.retries;
                }
            }
            if (r.transform == TransformKind::awq) alphas.push_back(res.awq_alpha);
            qs = std::move(res.quantized);
        }
        // L2QER's activation magnitudes in the transformed basis: max over sequences of mean |x_j / s_j|.
        Eigen::VectorXf act;
        if (r.low_rank == LowRankKind::l2qer) {
            CalibOptions co;
            co.hessian = false;
            CalibrationStats st(in, co);
            Eigen::Index off = 0;
            for (std::size_t n : seq_lens) {
                st.add(X->middleRows(off, static_cast<Eigen::Index>(n)));
                off += static_cast<Eigen::Index>(n);
            }
            act = st.sample_mean_abs_max().cast<float>().cwiseQuotient(s);
        }
        for (std::size_t k = 0; k < ws.size(); ++k) {
            const int idx = members[k];
            RowMatrix& W = L.linear(kLinearNames[idx]);
            LinearExtras& e = L.extras[idx];
            const double n = static_cast<double>(W.size());
            double bits = effective_bits(qs[k]);
            RowMatrix wq;
            if (r.low_rank == LowRankKind::none) {
                wq = dequantize(qs[k]);
            } else {
                LqerOptions lo;
                lo.rank = r.rank;
                lo.scaled = r.low_rank == LowRankKind::l2qer;
                const RowMatrixXf wt = W * s.asDiagonal();
                if (r.low_rank == LowRankKind::lorc) {
                    auto lq = Lqer<F, G, Float32>(lo, gran).compute(wt, qs[k]);
                    e.lr_a = lq.A.template cast<Eigen::half>().template cast<float>();
                    e.lr_b = lq.B.template cast<Eigen::half>().template cast<float>();
                    bits += 16.0 * static_cast<double>(e.lr_a.size() + e.lr_b.size()) / n;
                    wq = std::move(lq.weight_dequantized);
                } else {
                    auto lq = Lqer<F, G, MxInt<8, 16>>(lo, gran).compute(wt, qs[k], lo.scaled ? &act : nullptr);
                    e.lr_a = std::move(lq.A);
                    e.lr_b = std::move(lq.B);
                    bits = lq.effective_bits;
                    wq = std::move(lq.weight_dequantized);
                }
            }
            if (r.transform != TransformKind::none) e.inv_scale = s.cwiseInverse();
            W = std::move(wq);
            bits_sum += bits * n;
            rep.weights += static_cast<std::size_t>(W.size());
        }
    }

    Model run(const Model& fp32, CalibData* calib, bool sequential,
              const std::function<void(const std::string&)>& progress) {
        const auto t0 = clock_type::now();
        Model m = fp32;
        m.act_quant = make_activation_quantizer(r.act);
        const bool need = r.needs_calibration();
        if (need && !calib) throw std::invalid_argument("recipe " + r.text() + " needs calibration data");
        std::vector<std::size_t> seq_lens;
        if (need)
            for (const auto& q : calib->seqs) seq_lens.push_back(q.size());
        const CalibData::Fp32Captures* caps = nullptr;
        std::vector<RowMatrix> states;
        if (need) {
            const auto tc = clock_type::now();
            if (sequential) states = initial_states(m, *calib);
            else caps = &fp32_captures(fp32, *calib);
            rep.calib_seconds += seconds_since(tc);
        }
        const int layers = m.config.n_layers;
        for (int l = 0; l < layers; ++l) {
            if (progress) progress("layer " + std::to_string(l + 1) + "/" + std::to_string(layers));
            for (int g = 0; g < kGroupCount; ++g) {
                RowMatrix X;
                const RowMatrix* xp = nullptr;
                if (need) {
                    if (sequential) {
                        const auto tc = clock_type::now();
                        X = capture_group(m, l, g, states, calib->tokens);
                        rep.calib_seconds += seconds_since(tc);
                        xp = &X;
                    } else {
                        xp = &caps->x[static_cast<std::size_t>(l)][static_cast<std::size_t>(g)];
                    }
                }
                quantize_group(m, l, g, xp, seq_lens);
            }
            if (need && sequential && l + 1 < layers) {
                const auto tc = clock_type::now();
                advance_states(m, l, states);
                rep.calib_seconds += seconds_since(tc);
            }
        }
        rep.effective_bits = rep.weights ? bits_sum / static_cast<double>(rep.weights) : 0.0;
        rep.calib_loss_ratio = ratio_count ? ratio_sum / ratio_count : std::numeric_limits<double>::quiet_NaN();
        std::ostringstream notes;
        if (!alphas.empty()) {
            double a = 0;
            for (float x : alphas) a += x;
            notes << "awq mean alpha " << std::fixed;
            notes.precision(2);
            notes << a / static_cast<double>(alphas.size());
        }
        if (gptq_retries) notes << (notes.tellp() > 0 ? "; " : "") << "gptq damping retries " << gptq_retries;
        rep.notes = notes.str();
        rep.seconds = seconds_since(t0);
        return m;
    }
};

}  // namespace

Model quantize_model(const Model& fp32, const RecipeSpec& r, CalibData* calib, bool sequential, QuantReport* report,
                     const std::function<void(const std::string&)>& progress) {
    QuantReport local;
    QuantReport& rep = report ? *report : local;
    rep = QuantReport{};
    if (r.sequential) sequential = *r.sequential;
    Model out;
    const bool found = for_each_type(WeightFormats{}, [&]<class F>() {
        if (F::name() != r.weight) return false;
        out = ModelQuantizer<F>(r, rep).run(fp32, calib, sequential, progress);
        return true;
    });
    if (!found)
        throw RecipeError("unsupported weight format '" + r.weight +
                          "'; supported: " + join(supported_weight_formats()));
    return out;
}

}  // namespace ptq::llama
