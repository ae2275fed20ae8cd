// Rotation of a Llama model: norm folding, residual rotation, online w2-input transform (see
// rotation.hpp).
#include "rotation.hpp"

#include <ptq/error.hpp>
#include <ptq/transform/hadamard.hpp>
#include <ptq/transform/random_orthogonal.hpp>
#include <ptq/transform/rotation.hpp>

namespace ptq::llama {

const char* rotation_kind_name(RotationKind k) {
    switch (k) {
        case RotationKind::none: return "none";
        case RotationKind::hadamard: return "hadamard";
        case RotationKind::random: return "random";
    }
    return "?";
}

Rotation make_rotation(const Config& c, RotationKind kind, std::uint64_t seed, bool online) {
    Rotation r;
    const auto dim = static_cast<std::size_t>(c.dim), hidden = static_cast<std::size_t>(c.hidden_dim);
    if (kind == RotationKind::hadamard) {
        if (!is_power_of_two(dim))
            ptq::detail::throw_invalid("llama::make_rotation", "kind",
                                       "hadamard needs a power-of-two dim, the model's is " + std::to_string(dim) +
                                           " (use random)");
        r.residual = RandomizedHadamard(dim, seed).matrix();
    } else if (kind == RotationKind::random) {
        r.residual = random_orthogonal(dim, seed);
    }
    if (online) {
        if (kind != RotationKind::random && is_power_of_two(hidden)) {
            r.w2_input = RandomizedHadamard(hidden, seed + 1).matrix();
            r.metadata_bits = static_cast<double>(hidden);  // one sign bit per column
        } else {
            r.w2_input = random_orthogonal(hidden, seed + 1);
            r.metadata_bits = 32.0 * static_cast<double>(hidden) * static_cast<double>(hidden);
        }
    }
    return r;
}

namespace {

/// Everything rotate_layer / rotate_ends could refuse, checked before anything is changed.
void check_rotation(const Config& c, const Rotation& rot, const char* fn) {
    if (rot.residual.size() != 0 && (rot.residual.rows() != c.dim || rot.residual.cols() != c.dim))
        ptq::detail::throw_invalid(fn, "rot", "residual is not dim x dim (" + std::to_string(c.dim) + ")");
    if (rot.w2_input.size() != 0 && (rot.w2_input.rows() != c.hidden_dim || rot.w2_input.cols() != c.hidden_dim))
        ptq::detail::throw_invalid(fn, "rot",
                                   "w2_input is not hidden_dim x hidden_dim (" + std::to_string(c.hidden_dim) + ")");
    if (!rot.residual.allFinite() || !rot.w2_input.allFinite()) ptq::detail::throw_non_finite(fn, "rot", "a rotation");
}

void check_layer(const Layer& L, const Config& c, const char* fn) {
    for (int i = 0; i < 7; ++i) {
        const std::string name(kLinearNames[i]);
        const LinearExtras& e = L.extras[i];
        if (e.inv_scale.size() != 0 || e.lr_a.size() != 0 || e.lr_b.size() != 0)
            ptq::detail::throw_invalid(fn, "L",
                                       "linear " + name +
                                           " has quantization extras (input scales or low-rank factors): rotate the "
                                           "fp32 model before quantizing it");
        const auto [rows, cols] = linear_shape(c, name);
        const RowMatrix& w = L.linear(name);
        if (w.rows() != rows || w.cols() != cols)
            ptq::detail::throw_invalid(fn, "L",
                                       "linear " + name + " is " + std::to_string(w.rows()) + "x" +
                                           std::to_string(w.cols()) + ", the config says " + std::to_string(rows) +
                                           "x" + std::to_string(cols));
    }
    if (L.rms_att.size() != c.dim || L.rms_ffn.size() != c.dim)
        ptq::detail::throw_invalid(fn, "L", "a norm weight does not have dim entries");
    if (!L.rms_att.allFinite() || !L.rms_ffn.allFinite()) ptq::detail::throw_non_finite(fn, "L", "a norm weight");
}

}  // namespace

void rotate_layer(Layer& L, const Config& c, const Rotation& rot) {
    check_rotation(c, rot, "llama::rotate_layer");
    check_layer(L, c, "llama::rotate_layer");
    if (rot.residual.size() != 0) {
        // RMSNorm(h) = h / sqrt(mean(h^2) + eps) * g: mean(h^2) is invariant under h -> h Q
        // (||h Q|| = ||h||), so the norm commutes with Q only once g is folded away (g = 1).
        fold_norm_weight(L.rms_att, {&L.wq, &L.wk, &L.wv});
        fold_norm_weight(L.rms_ffn, {&L.w1, &L.w3});
        for (RowMatrix* w : {&L.wq, &L.wk, &L.wv, &L.w1, &L.w3}) rotate_input(*w, rot.residual);
        rotate_output(L.wo, rot.residual);
        rotate_output(L.w2, rot.residual);
    }
    if (rot.w2_input.size() != 0) rotate_input(L.w2, rot.w2_input);
}

void rotate_ends(Model& m, const Rotation& rot) {
    if (m.w2_input_rotation.size() != 0)
        ptq::detail::throw_invalid("llama::rotate_ends", "m", "already has an online rotation of the w2 input");
    check_rotation(m.config, rot, "llama::rotate_ends");
    if (rot.residual.size() != 0 && (m.rms_final.size() != m.config.dim || !m.rms_final.allFinite()))
        ptq::detail::throw_invalid("llama::rotate_ends", "m", "rms_final does not hold dim finite values");
    if (rot.residual.size() != 0) {
        if (m.config.shared_classifier) {
            m.classifier = m.token_embedding;
            m.config.shared_classifier = false;
        }
        rotate_input(m.token_embedding, rot.residual);  // rows are stream vectors: E Q
        fold_norm_weight(m.rms_final, {&m.classifier});
        rotate_input(m.classifier, rot.residual);
    }
    if (rot.w2_input.size() != 0) m.w2_input_rotation = rot.w2_input.cast<float>();
}

void rotate_model(Model& m, const Rotation& rot) {
    if (m.layers.size() != static_cast<std::size_t>(m.config.n_layers))
        ptq::detail::throw_invalid("llama::rotate_model", "m", "layers.size() differs from n_layers");
    for (const Layer& L : m.layers) check_layer(L, m.config, "llama::rotate_model");  // refuse before changing m
    rotate_ends(m, rot);
    for (Layer& L : m.layers) rotate_layer(L, m.config, rot);
}

}  // namespace ptq::llama
