// ModelQuantizer<F>: quantize_model for one weight format F (see quantize_model.hpp), and the
// encoding of its quantized linears for the output formats. Internal to the tool: included
// only by quantize_formats.cpp.
#pragma once

#include "calibration.hpp"
#include "forward.hpp"
#include "gguf_model.hpp"
#include "hf_model.hpp"
#include "quantize_families.hpp"
#include "quantize_model.hpp"
#include "weight_formats.hpp"

#include <ptq/ptq.hpp>
#include <ptq/io/awq_layout.hpp>
#include <ptq/io/compressed_tensors_layout.hpp>
#include <ptq/io/gguf_blocks.hpp>
#include <ptq/io/gptq_layout.hpp>
#include <ptq/io/format_traits.hpp>

#include <chrono>
#include <cmath>
#include <iterator>
#include <limits>
#include <sstream>

namespace ptq::llama::detail {

/// True when `q` of format F may be stored as `f` (a recipe that passed resolve_for_output).
template <class F>
constexpr bool encodable(OutputFormat f) {
    switch (f) {
        case OutputFormat::gguf: return io::GgmlBlockFormat<F>;
        case OutputFormat::gptq:
            return io::is_int_format_v<F> && (F::bits == 2 || F::bits == 3 || F::bits == 4 || F::bits == 8);
        case OutputFormat::awq: return io::is_int_format_v<F> && F::bits == 4;
        case OutputFormat::compressed_tensors:
            return io::is_int_format_v<F> || io::is_fp8_e4m3_v<F> || io::is_mxfp4_v<F>;
        case OutputFormat::none: return false;
    }
    return false;
}

/// Rows of q permuted: row r of the result is row perm[r] of q (one row group per row).
template <class F>
QuantizedMatrix<F> permute_rows(const QuantizedMatrix<F>& q, const std::vector<Eigen::Index>& perm) {
    QuantizedMatrix<F> out(q.layout());
    const std::size_t groups = q.layout().col_groups();
    for (std::size_t r = 0; r < q.rows(); ++r) {
        const auto src = static_cast<std::size_t>(perm[r]);
        std::copy_n(q.row_data(src), q.row_stride(), out.row_data(r));
        std::copy_n(q.row_params(src), groups, out.row_params(r));
    }
    return out;
}

/// Source row of every HF row of a q / k weight (rope_rows_to_rotate_half as a permutation).
inline std::vector<Eigen::Index> rotate_half_rows(Eigen::Index rows, int n_heads) {
    const Eigen::Index hs = rows / n_heads, half = hs / 2;
    std::vector<Eigen::Index> p(static_cast<std::size_t>(rows));
    for (Eigen::Index h = 0; h < n_heads; ++h)
        for (Eigen::Index i = 0; i < half; ++i)
            for (Eigen::Index j = 0; j < 2; ++j)
                p[static_cast<std::size_t>(h * hs + j * half + i)] = h * hs + 2 * i + j;
    return p;
}

/// Encodes linear `idx` of layer `l` (q: codes and parameters in storage column order,
/// storage_perm: original column of each storage column, empty = identity) for format `f`.
template <class F>
EncodedLinear encode_linear(const QuantizedMatrix<F>& q, const std::vector<std::size_t>& storage_perm, int l, int idx,
                            const Config& c, OutputFormat f) {
    EncodedLinear e;
    e.layer = l;
    e.linear = idx;
    const std::size_t in = q.cols(), out = q.rows();
    const std::string_view name = kLinearNames[idx];
    if constexpr (encodable<F>(OutputFormat::gguf) || encodable<F>(OutputFormat::gptq) ||
                  encodable<F>(OutputFormat::compressed_tensors)) {
        if (f == OutputFormat::gguf) {
            if constexpr (io::GgmlBlockFormat<F>) {
                if (in % io::ggml_block_elements != 0) {
                    e.dense = true;
                    e.dense_reason = "row length " + std::to_string(in) + " is not a multiple of 32";
                    return e;
                }
                io::GgmlTensor t = io::to_ggml(q, gguf_linear_name(l, name));
                e.ggml_type = t.type;
                e.ggml_data = std::move(t.data);
                return e;
            }
        }
        // Hugging Face layouts: rows in transformers' rotate-half order for q / k.
        const std::string hf = hf_linear_name(l, name);
        const std::string prefix = hf.substr(0, hf.size() - std::string_view(".weight").size());
        QuantizedMatrix<F> permuted;
        const QuantizedMatrix<F>* qp = &q;
        if (idx <= 1) {
            permuted =
                permute_rows(q, rotate_half_rows(static_cast<Eigen::Index>(out), idx == 0 ? c.n_heads : c.n_kv_heads));
            qp = &permuted;
        }
        const std::size_t group = q.layout().group_cols >= in ? in : q.layout().group_cols;
        if (f == OutputFormat::gptq) {
            if constexpr (encodable<F>(OutputFormat::gptq)) {
                const std::size_t mult = io::detail::gptq_dim_multiple(F::bits);
                if (in % mult || out % mult) {
                    e.dense = true;
                    e.dense_reason = "gptq packs in and out in multiples of " + std::to_string(mult);
                    return e;
                }
                io::LayerExport x = io::export_gptq(*qp, prefix, storage_perm);
                e.tensors = std::move(x.tensors);
                e.quantization_config = std::move(x.quantization_config);
                return e;
            }
        }
        if (f == OutputFormat::awq) {
            if constexpr (encodable<F>(OutputFormat::awq)) {
                if (out % 8 || in % group) {
                    e.dense = true;
                    e.dense_reason = "awq needs out % 8 == 0 and in % group_size == 0";
                    return e;
                }
                io::LayerExport x = io::export_awq(*qp, prefix);
                e.tensors = std::move(x.tensors);
                e.quantization_config = std::move(x.quantization_config);
                return e;
            }
        }
        if (f == OutputFormat::compressed_tensors) {
            if constexpr (encodable<F>(OutputFormat::compressed_tensors)) {
                if (in % group || (io::is_mxfp4_v<F> && in % 32)) {
                    e.dense = true;
                    e.dense_reason = "compressed-tensors needs in % group_size == 0";
                    return e;
                }
                io::CtExportOptions o;
                o.scale_dtype = io::DType::F16;
                if constexpr (io::is_fp8_e4m3_v<F>) o.scale_dtype = io::DType::F32;
                io::LayerExport x = io::export_compressed_tensors(*qp, prefix, storage_perm, o);
                e.tensors = std::move(x.tensors);
                e.quantization_config = std::move(x.quantization_config);
                return e;
            }
        }
    }
    throw RecipeError(std::string("weight format ") + F::name() + " cannot be written as " + output_format_name(f));
}

inline ScaleStorage scale_storage_of(const RecipeSpec& r) {
    if (!r.scale || *r.scale == "f32") return ScaleStorage::f32;
    return *r.scale == "f16" ? ScaleStorage::f16 : ScaleStorage::bf16;
}

/// QuantOptions of RTN / GPTQ from the recipe (rounding etc.: library defaults).
inline QuantOptions quant_options(const RecipeSpec& r) {
    QuantOptions q;
    q.scale_storage = scale_storage_of(r);
    if (r.clip != ClipKind::none) {
        q.range = RangeMethod::mse_search;
        q.clip.grid = r.clip_grid;
        q.clip.max_shrink = r.clip_shrink;
        q.clip.norm = r.clip_norm;
        q.clip.separate_bounds = r.clip == ClipKind::cs_asym;
    }
    return q;
}

inline PipelineOptions pipeline_options(const RecipeSpec& r, bool transform) {
    PipelineOptions po;
    po.transform = !transform                                   ? Transform::none
                   : r.transform == TransformKind::awq          ? Transform::awq
                   : r.transform == TransformKind::smooth_quant ? Transform::smooth_quant
                                                                : Transform::none;
    po.reconstruct = r.reconstruct == ReconstructKind::gptq ? Reconstruct::gptq : Reconstruct::rtn;
    po.rtn = quant_options(r);
    po.gptq.quant = quant_options(r);
    po.gptq.percdamp = r.damp;
    po.gptq.block_size = r.block;
    po.gptq.act_order = r.act_order;
    po.gptq.static_groups = r.static_groups;
    po.refine.passes = r.refine;
    po.refine.refit_scales = r.refit;
    po.gptaq.alpha = r.gptaq_alpha;
    po.smooth_quant.alpha = r.sq_alpha;
    po.awq.grid = r.awq_grid;
    po.awq.duo_scaling = r.awq_duo;
    po.awq.clip_search = r.awq_clip;
    po.awq.quant.scale_storage = scale_storage_of(r);
    return po;
}

using clock_type = std::chrono::steady_clock;
inline double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

template <class F>
struct ModelQuantizer {
    using G = std::conditional_t<F::is_mx, default_granularity_t<F>, PerGroup<dynamic_group>>;

    ModelQuantizer(const RecipeSpec& spec, const QuantizeOptions& options, QuantizedModel& result)
        : r(spec), opt(options), res(result), rep(result.report) {}

    const RecipeSpec& r;
    const QuantizeOptions& opt;
    QuantizedModel& res;
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

    /// Quantizes group g of layer l of m (whose weights there are still fp32) on inputs X (with
    /// gptaq: X_fp, the fp32 model's inputs of the same tokens).
    void quantize_group(Model& m, int l, int g, const RowMatrix* X, const RowMatrix* X_fp,
                        const std::vector<std::size_t>& seq_lens) {
        Layer& L = m.layers[static_cast<std::size_t>(l)];
        const auto& members = group_members()[static_cast<std::size_t>(g)];
        std::vector<RowMatrixRef> ws;
        for (int idx : members) ws.emplace_back(L.linear(kLinearNames[idx]));
        const Eigen::Index in = ws.front().cols();
        const G gran = granularity(in);
        // Files: transformations only where 1/s folds exactly into an RMSNorm (q/k/v, w1/w3).
        const bool writing = opt.output != OutputFormat::none;
        const bool transform = r.transform != TransformKind::none && (!writing || g == 0 || g == 2);
        Eigen::VectorXf s = Eigen::VectorXf::Ones(in);
        std::vector<QuantizedMatrix<F>> qs;
        std::vector<std::vector<std::size_t>> perms(ws.size());
        std::vector<RowMatrix> permuted_dq(ws.size());
        if (!transform && r.reconstruct == ReconstructKind::rtn) {
            for (const auto& w : ws) qs.push_back(Rtn<F, G>(quant_options(r), gran).quantize(w));
        } else {
            const Pipeline<F, G> pipeline(pipeline_options(r, transform), gran);
            auto pr = X_fp ? pipeline.quantize(*X, ws, *X_fp) : pipeline.quantize(*X, ws);
            s = pr.scales;
            for (std::size_t k = 0; k < ws.size(); ++k) {
                if (pr.output_mse_rtn[k] > 0.0) {
                    ratio_sum += pr.output_mse[k] / pr.output_mse_rtn[k];
                    ++ratio_count;
                }
                if (!pr.gptq.empty()) {
                    gptq_retries += pr.gptq[k].diagnostics.retries;
                    if (pr.gptq[k].permuted_storage) {
                        perms[k] = pr.gptq[k].storage_perm;
                        permuted_dq[k] = pr.gptq[k].dequantized;
                    }
                }
            }
            if (transform && r.transform == TransformKind::awq) alphas.push_back(pr.awq_alpha);
            qs = std::move(pr.quantized);
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
                wq = perms[k].empty() ? RowMatrix(dequantize(qs[k])) : std::move(permuted_dq[k]);
            } else {
                if (!perms[k].empty())
                    throw RecipeError("recipe '" + r.text() +
                                      "': act-order with permuted groups and a low-rank step "
                                      "is not offered (add static-groups=1)");
                LqerOptions lo;
                lo.rank = r.rank;
                lo.scaled = r.low_rank == LowRankKind::l2qer;
                const RowMatrixXf wt = W * s.asDiagonal();
                if (r.low_rank_format() == "fp16") {
                    auto lq = Lqer<F, G, Float32>(lo, gran).compute(wt, qs[k], lo.scaled ? &act : nullptr);
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
            if (transform) e.inv_scale = s.cwiseInverse();
            W = std::move(wq);
            bits_sum += bits * n;
            rep.weights += static_cast<std::size_t>(W.size());
            if (writing) {
                if constexpr (encodable<F>(OutputFormat::gguf) || encodable<F>(OutputFormat::gptq) ||
                              encodable<F>(OutputFormat::compressed_tensors)) {
                    res.linears.push_back(encode_linear(qs[k], perms[k], l, idx, m.config, opt.output));
                } else {
                    throw RecipeError(std::string("weight format ") + F::name() + " cannot be written as " +
                                      output_format_name(opt.output));
                }
            }
        }
        // Files: fold 1/s into the RMSNorm before the group (exact up to float rounding).
        if (writing && transform) {
            const Eigen::VectorXf inv = s.cwiseInverse();
            Vector& norm = g == 0 ? L.rms_att : L.rms_ffn;
            norm = norm.cwiseProduct(inv);
            for (int idx : members) L.extras[idx].inv_scale.resize(0);
        }
    }

    /// Releases what layer l holds beyond its norms (weights, extras) and the bytes of its
    /// encoded linears (the streaming path, once the layer was handed to opt.layer_done).
    void release_layer(int l, std::size_t first_linear) {
        Layer& L = res.model.layers[static_cast<std::size_t>(l)];
        for (int idx = 0; idx < 7; ++idx) {
            L.linear(kLinearNames[idx]) = RowMatrix();
            L.extras[idx] = LinearExtras();
        }
        for (std::size_t i = first_linear; i < res.linears.size(); ++i) {
            res.linears[i].ggml_data = {};
            res.linears[i].tensors = {};
        }
    }

    /// fp32: the model to quantize; with opt.load_layer its layers hold no linear weights yet.
    void run(Model&& fp32, CalibData* calib) {
        const auto t0 = clock_type::now();
        const bool sequential = r.sequential ? *r.sequential : opt.sequential;
        Model& m = res.model;
        m = std::move(fp32);  // still fp32 until the layer loop
        const LayerLoader& load = opt.load_layer;
        const ActivationQuantizer act_quant = make_activation_quantizer(r.act);
        const bool need = r.needs_calibration();
        if (need && !calib) throw RecipeError("recipe '" + r.text() + "' needs calibration data");
        std::vector<std::size_t> seq_lens;
        if (need)
            for (const auto& q : calib->seqs) seq_lens.push_back(q.size());
        if (r.gptaq && !sequential)
            throw RecipeError("recipe '" + r.text() + "': gptaq=1 needs the sequential protocol");
        const CalibData::Fp32Captures* caps = nullptr;
        std::vector<RowMatrix> states;
        if (need) {
            const auto tc = clock_type::now();
            if (sequential) states = initial_states(m, *calib);
            // Non-sequential: the fp32 inputs are the calibration inputs; gptaq: they are the
            // targets' inputs, beside the quantized model's.
            if (!sequential || r.gptaq) caps = &fp32_captures(m, *calib, load);
            rep.calib_seconds += seconds_since(tc);
        }
        m.act_quant = act_quant;
        const int layers = m.config.n_layers;
        for (int l = 0; l < layers; ++l) {
            if (load) load(l, m.layers[static_cast<std::size_t>(l)]);
            const std::size_t first_linear = res.linears.size();
            for (int g = 0; g < kGroupCount; ++g) {
                RowMatrix X;
                const RowMatrix *xp = nullptr, *xfp = nullptr;
                if (r.gptaq) xfp = &caps->x[static_cast<std::size_t>(l)][static_cast<std::size_t>(g)];
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
                quantize_group(m, l, g, xp, xfp, seq_lens);
            }
            if (need && sequential && l + 1 < layers) {
                const auto tc = clock_type::now();
                advance_states(m, l, states);
                rep.calib_seconds += seconds_since(tc);
            }
            if (opt.layer_done) {
                const auto first = res.linears.begin() + static_cast<std::ptrdiff_t>(first_linear);
                std::vector<EncodedLinear> done(std::make_move_iterator(first),
                                                std::make_move_iterator(res.linears.end()));
                opt.layer_done(m, l, done);
                res.linears.resize(first_linear);
                res.linears.insert(res.linears.end(), std::make_move_iterator(done.begin()),
                                   std::make_move_iterator(done.end()));
                if (!opt.keep_layers) release_layer(l, first_linear);
            }
            if (opt.progress) opt.progress(l + 1, layers);
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
    }
};

/// quantize_model for the formats of one family: false when r.weight is not among them.
template <class... Fs>
bool quantize_family(TypeList<Fs...> list, Model&& fp32, const RecipeSpec& r, CalibData* calib,
                     const QuantizeOptions& o, QuantizedModel& out) {
    return for_each_type(list, [&]<class F>() {
        if (F::name() != r.weight) return false;
        ModelQuantizer<F>(r, o, out).run(std::move(fp32), calib);
        return true;
    });
}

}  // namespace ptq::llama::detail
