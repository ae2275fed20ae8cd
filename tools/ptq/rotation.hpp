// Rotation of a Llama model (QuaRot-style computational invariance): every RMSNorm weight folded
// into the linears that read it, the residual stream rotated by an orthogonal Q fused into the
// weights, and an optional online orthogonal transform of w2's input. Layer by layer
// (rotate_layer) plus the ends of the model (rotate_ends), so that a streaming quantizer can
// rotate each layer as it loads it.
#pragma once

#include "model.hpp"

#include <Eigen/Core>

#include <cstdint>
#include <string>

namespace ptq::llama {

/// The residual rotation Q: none, a randomized Hadamard matrix (dim a power of two) or a
/// random orthogonal matrix (any dim), both deterministic by seed.
enum class RotationKind { none, hadamard, random };

/// "none", "hadamard", "random".
const char* rotation_kind_name(RotationKind k);

/// The orthogonal matrices of a rotation, in double (docs/DESIGN.md §13.1).
struct Rotation {
    /// Q [dim x dim] of the residual stream h' = h Q; empty = no residual rotation.
    Eigen::MatrixXd residual;
    /// Online transform R [hidden x hidden] of w2's input x' = x R (W2 <- W2 R); empty = none.
    Eigen::MatrixXd w2_input;
    /// Bits needed to store what the weights do not hold: the online matrix (0 without it).
    double metadata_bits = 0.0;
    bool empty() const { return residual.size() == 0 && w2_input.size() == 0; }
};

/// The rotation of a model with config `c`:
///   residual: hadamard -> RandomizedHadamard(dim, seed) (ptq::invalid_argument naming `kind`
///   if dim is not a power of two); random -> random_orthogonal(dim, seed); none -> empty.
///   online (w2's input): a randomized Hadamard matrix of seed + 1 when hidden is a power of two
///   and kind is not random (metadata: its hidden sign bits), else random_orthogonal(hidden,
///   seed + 1), stored as hidden^2 fp32 values (metadata 32 hidden^2 bits: one matrix shared by
///   every layer).
Rotation make_rotation(const Config& c, RotationKind kind, std::uint64_t seed, bool online);

/// Rotates layer `L` of a model with config `c` (the layer alone: the model computes the same
/// function only once every layer and the ends are rotated):
///   with rot.residual = Q: rms_att folded into wq/wk/wv, rms_ffn into w1/w3 (W <- W diag(g),
///   g <- 1); inputs of wq/wk/wv/w1/w3 rotated (W <- W Q), outputs of wo/w2 (W <- Q^T W);
///   with rot.w2_input = R: W2 <- W2 R (after the residual rotation of its output).
/// Throws ptq::invalid_argument when the layer has quantization extras (input scales or
/// low-rank factors: rotate the fp32 model, then quantize) or the shapes disagree with c.
void rotate_layer(Layer& L, const Config& c, const Rotation& rot);

/// Rotates the ends of `m`: the token embedding (E <- E Q), the final norm folded into the
/// classifier, which becomes a separate matrix when it was the embedding (shared_classifier
/// turns false: after folding and rotation the two differ), classifier input rotated (C <- C Q);
/// sets m.w2_input_rotation = float(rot.w2_input). Throws ptq::invalid_argument when m already
/// has an online rotation.
void rotate_ends(Model& m, const Rotation& rot);

/// rotate_ends and rotate_layer for every layer: the rotated model computes the same logits
/// as `m` up to float rounding.
void rotate_model(Model& m, const Rotation& rot);

}  // namespace ptq::llama
