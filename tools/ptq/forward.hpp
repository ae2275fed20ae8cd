// The Llama forward pass of the tool (Eigen, float32): layer_forward, embed, forward,
// sequence_nll, generate_greedy, with an ActivationHook seeing the input of every linear.
#pragma once

#include "model.hpp"
#include "tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ptq::llama {

// ---------------------------------------------------------------------------------------------
// Forward pass
// ---------------------------------------------------------------------------------------------

/// Called during forward() with the input activations X [tokens x in] of each linear, just
/// before the product X * W^T: (layer, "wq".."w3", X). wq/wk/wv see the same X (attention
/// RMSNorm output), as do w1/w3 (FFN RMSNorm output); wo sees the attention output, w2 the
/// gated SwiGLU activation silu(w1 x) * (w3 x).
using ActivationHook = std::function<void(int layer, std::string_view linear, const RowMatrix& x)>;

namespace detail {

/// RMSNorm per row: y = w * x / sqrt(mean(x^2) + 1e-5). Sum of squares in float (as run.c).
inline void rmsnorm_rows(const RowMatrix& x, const Vector& w, RowMatrix& y) {
    y.resize(x.rows(), x.cols());
    const float n = static_cast<float>(x.cols());
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
        const float ss = x.row(t).squaredNorm() / n + 1e-5f;
        const float inv = 1.0f / std::sqrt(ss);
        y.row(t) = (x.row(t).array() * inv) * w.transpose().array();
    }
}

/// Rotates adjacent pairs (2i, 2i+1) of every head in place: row t is position t.
inline void apply_rope(RowMatrix& x, const Model& m) {
    const int hs = m.config.head_size(), half = hs / 2;
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
        float* row = x.row(t).data();
        const float* cs = m.rope_cos.row(t).data();
        const float* sn = m.rope_sin.row(t).data();
        for (Eigen::Index h0 = 0; h0 < x.cols(); h0 += hs)
            for (int i = 0; i < half; ++i) {
                float& a = row[h0 + 2 * i];
                float& b = row[h0 + 2 * i + 1];
                const float a0 = a, b0 = b;
                a = a0 * cs[i] - b0 * sn[i];
                b = a0 * sn[i] + b0 * cs[i];
            }
    }
}

}  // namespace detail

namespace detail {

/// Scratch buffers of the forward pass (reused across layers).
struct ForwardScratch {
    RowMatrix xn, q, k, v, att, scores, h1, h3, xs, xs2, xb;
};

/// The input of linear `idx` after its extras: A(x * diag(inv_scale)). Returns `x` itself
/// (no copy) when there is neither a scale nor an activation quantizer.
inline const RowMatrix& prepare_input(const Model& m, const LinearExtras& e, const RowMatrix& x, RowMatrix& buf) {
    if (e.inv_scale.size() == 0 && !m.act_quant) return x;
    if (e.inv_scale.size() != 0) {
        if (e.inv_scale.size() != x.cols())
            throw std::invalid_argument("ptq::llama::forward: inv_scale has " + std::to_string(e.inv_scale.size()) +
                                        " entries, the input " + std::to_string(x.cols()) + " columns");
        buf = x * e.inv_scale.asDiagonal();
    } else {
        buf = x;
    }
    if (m.act_quant) m.act_quant(buf);
    return buf;
}

/// out = x' W^T (+ A(x' B^T) A^T), x' already prepared; x' W^T from the packed codes when
/// the linear has them (LinearExtras::packed), else the float product.
inline void linear_product(const Model& m, const LinearExtras& e, const RowMatrix& xp, const RowMatrix& w,
                           RowMatrix& out, RowMatrix& xb) {
    if (e.packed) out = e.packed->product(xp);
    else out.noalias() = xp * w.transpose();
    if (e.has_low_rank()) {
        xb.noalias() = xp * e.lr_b.transpose();
        if (m.act_quant) m.act_quant(xb);
        out.noalias() += xb * e.lr_a.transpose();
    }
}

inline bool same_scale(const LinearExtras& a, const LinearExtras& b) {
    return a.inv_scale.size() == b.inv_scale.size() && (a.inv_scale.size() == 0 || a.inv_scale == b.inv_scale);
}

}  // namespace detail

/// Runs transformer block `l` on the hidden states x [T x dim] (rows = positions 0..T-1) in
/// place. hook (if any) sees the input of each linear before its extras (scale, activation
/// quantization). If stop_after is a linear index 0..6, the block returns right after the hook
/// for that linear was called (x is then partially updated: use a copy) — a cheap way to
/// capture one linear's inputs.
inline void layer_forward(const Model& m, int l, RowMatrix& x, const ActivationHook& hook = {}, int stop_after = -1,
                          detail::ForwardScratch* scratch = nullptr) {
    const Config& c = m.config;
    const auto T = x.rows();
    detail::ForwardScratch local;
    detail::ForwardScratch& s = scratch ? *scratch : local;
    const Layer& L = m.layers[static_cast<std::size_t>(l)];
    const LinearExtras* E = L.extras;
    const int hs = c.head_size(), kv_mul = c.kv_mul();
    const float inv_sqrt_hs = 1.0f / std::sqrt(static_cast<float>(hs));
    auto call = [&](int idx, const RowMatrix& in) {
        if (hook) hook(l, kLinearNames[idx], in);
        return idx == stop_after;
    };
    // ---- attention
    detail::rmsnorm_rows(x, L.rms_att, s.xn);
    if (call(0, s.xn) || call(1, s.xn) || call(2, s.xn)) return;
    {
        const RowMatrix& xq = detail::prepare_input(m, E[0], s.xn, s.xs);
        detail::linear_product(m, E[0], xq, L.wq, s.q, s.xb);
        const RowMatrix& xk = detail::same_scale(E[0], E[1]) ? xq : detail::prepare_input(m, E[1], s.xn, s.xs2);
        detail::linear_product(m, E[1], xk, L.wk, s.k, s.xb);
        const RowMatrix& xv = detail::same_scale(E[1], E[2])   ? xk
                              : detail::same_scale(E[0], E[2]) ? xq
                                                               : detail::prepare_input(m, E[2], s.xn, s.xs2);
        detail::linear_product(m, E[2], xv, L.wv, s.v, s.xb);
    }
    detail::apply_rope(s.q, m);
    detail::apply_rope(s.k, m);
    s.att.resize(T, c.dim);
    s.scores.resize(T, T);
    for (int h = 0; h < c.n_heads; ++h) {
        const int g = h / kv_mul;  // kv head shared by kv_mul consecutive query heads
        s.scores.noalias() = s.q.middleCols(h * hs, hs) * s.k.middleCols(g * hs, hs).transpose();
        for (Eigen::Index i = 0; i < T; ++i) {
            auto row = s.scores.row(i);
            auto valid = row.head(i + 1);  // causal: keys 0..i
            valid *= inv_sqrt_hs;
            const float mx = valid.maxCoeff();
            valid = (valid.array() - mx).exp();
            valid /= valid.sum();
            row.tail(T - i - 1).setZero();
        }
        s.att.middleCols(h * hs, hs).noalias() = s.scores * s.v.middleCols(g * hs, hs);
    }
    if (call(3, s.att)) return;
    {
        const RowMatrix& xo = detail::prepare_input(m, E[3], s.att, s.xs);
        if (E[3].has_low_rank() || E[3].packed) {  // through linear_product
            detail::linear_product(m, E[3], xo, L.wo, s.h1, s.xb);
            x += s.h1;
        } else {
            x.noalias() += xo * L.wo.transpose();
        }
    }
    // ---- SwiGLU FFN: w2(silu(w1 x) * w3 x)
    detail::rmsnorm_rows(x, L.rms_ffn, s.xn);
    if (call(4, s.xn) || call(6, s.xn)) return;
    {
        const RowMatrix& x1 = detail::prepare_input(m, E[4], s.xn, s.xs);
        detail::linear_product(m, E[4], x1, L.w1, s.h1, s.xb);
        const RowMatrix& x3 = detail::same_scale(E[4], E[6]) ? x1 : detail::prepare_input(m, E[6], s.xn, s.xs2);
        detail::linear_product(m, E[6], x3, L.w3, s.h3, s.xb);
    }
    // silu(a) = a * sigmoid(a) = a / (1 + exp(-a)); for a -> -inf exp overflows to inf and the
    // quotient is -0, the correct limit.
    s.h1.array() = s.h1.array() / (1.0f + (-s.h1.array()).exp()) * s.h3.array();
    if (m.w2_input_rotation.size() != 0) {  // online rotation x <- x R (Model::w2_input_rotation)
        if (m.w2_input_rotation.rows() != s.h1.cols() || m.w2_input_rotation.cols() != s.h1.cols())
            throw std::invalid_argument("ptq::llama::forward: w2_input_rotation is not hidden_dim x hidden_dim");
        s.h3.noalias() = s.h1 * m.w2_input_rotation;
        s.h1.swap(s.h3);
    }
    if (call(5, s.h1)) return;
    {
        const RowMatrix& x2 = detail::prepare_input(m, E[5], s.h1, s.xs);
        if (E[5].has_low_rank() || E[5].packed) {  // through linear_product
            detail::linear_product(m, E[5], x2, L.w2, s.h3, s.xb);
            x += s.h3;
        } else {
            x.noalias() += x2 * L.w2.transpose();
        }
    }
}

/// The token embeddings of `tokens` [T x dim] (the input of layer 0). Throws on bad ids or
/// T > seq_len.
inline RowMatrix embed(const Model& m, std::span<const int> tokens) {
    const Config& c = m.config;
    const auto T = static_cast<Eigen::Index>(tokens.size());
    if (T > c.seq_len)
        throw std::invalid_argument("ptq::llama::forward: " + std::to_string(T) + " tokens exceed seq_len " +
                                    std::to_string(c.seq_len));
    RowMatrix x(T, c.dim);
    for (Eigen::Index t = 0; t < T; ++t) {
        const int id = tokens[static_cast<std::size_t>(t)];
        if (id < 0 || id >= c.vocab_size)
            throw std::out_of_range("ptq::llama::forward: token id " + std::to_string(id) + " outside [0, " +
                                    std::to_string(c.vocab_size) + ")");
        x.row(t) = m.token_embedding.row(id);
    }
    return x;
}

/// Runs the model on `tokens` (positions 0..T-1, T <= seq_len) and returns the logits
/// [T x vocab] (float). Row t holds the next-token logits after tokens[0..t].
/// Numerics: float32 storage and Eigen float32 GEMMs; attention softmax subtracts the row max.
/// The linears use their LinearExtras and Model::act_quant (see there); the classifier is
/// always the plain fp32 product.
inline RowMatrix forward(const Model& m, std::span<const int> tokens, const ActivationHook& hook = {}) {
    const Config& c = m.config;
    if (tokens.empty()) return RowMatrix(0, c.vocab_size);
    RowMatrix x = embed(m, tokens);
    detail::ForwardScratch scratch;
    for (int l = 0; l < c.n_layers; ++l) layer_forward(m, l, x, hook, -1, &scratch);
    RowMatrix xn;
    detail::rmsnorm_rows(x, m.rms_final, xn);
    return xn * m.output_weights().transpose();
}

/// Sum over t = 0..T-2 of -log softmax(logits[t])[tokens[t+1]], in double. Each row's
/// log-sum-exp subtracts the row max (float exp, double log and accumulation).
inline double sequence_nll(const Model& m, std::span<const int> tokens, const ActivationHook& hook = {}) {
    if (tokens.size() < 2) return 0.0;
    const RowMatrix logits = forward(m, tokens.first(tokens.size() - 1), hook);
    double nll = 0.0;
    for (Eigen::Index t = 0; t < logits.rows(); ++t) {
        const auto row = logits.row(t);
        const float mx = row.maxCoeff();
        const double lse = static_cast<double>(mx) + std::log(static_cast<double>((row.array() - mx).exp().sum()));
        nll += lse - static_cast<double>(row(tokens[static_cast<std::size_t>(t) + 1]));
    }
    return nll;
}

/// Greedy (argmax) continuation of `prompt` for `steps` new tokens; stops early at BOS/EOS or
/// when seq_len is reached. Returns the new tokens only.
inline std::vector<int> generate_greedy(const Model& m, std::vector<int> prompt, int steps) {
    std::vector<int> out;
    while (static_cast<int>(out.size()) < steps && static_cast<int>(prompt.size()) < m.config.seq_len) {
        const RowMatrix logits = forward(m, prompt);
        Eigen::Index best;
        logits.row(logits.rows() - 1).maxCoeff(&best);
        const int id = static_cast<int>(best);
        if (id == Tokenizer::kBos || id == Tokenizer::kEos) break;
        out.push_back(id);
        prompt.push_back(id);
    }
    return out;
}

}  // namespace ptq::llama
