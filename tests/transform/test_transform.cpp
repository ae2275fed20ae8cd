// Rotations (include/ptq/transform/): the fast Walsh-Hadamard transform against the explicit
// Sylvester matrix, SIMD == scalar bit for bit, randomized Hadamard and random orthogonal
// matrices (orthogonality, determinism by seed), and the computational invariance of a toy
// 2-layer pre-norm block under norm folding and residual rotation.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <Eigen/Core>

#include <ptq/transform/hadamard.hpp>
#include <ptq/transform/random_orthogonal.hpp>
#include <ptq/transform/rotation.hpp>

#include "../format/support.hpp"

namespace {

using ptq::RowMatrixXf;
using ptq_test::gaussian;

/// Sylvester's recursion H_1 = [1], H_2n = [[H_n, H_n], [H_n, -H_n]] (unnormalised), written
/// independently of hadamard_matrix's closed form.
Eigen::MatrixXd sylvester(std::size_t n) {
    Eigen::MatrixXd h = Eigen::MatrixXd::Ones(1, 1);
    while (std::size_t(h.rows()) < n) {
        const Eigen::Index k = h.rows();
        Eigen::MatrixXd n2(2 * k, 2 * k);
        n2 << h, h, h, -h;
        h = n2;
    }
    return h;
}

template <class Arch>
void check_simd_equals_scalar() {
    for (std::size_t n : {1u, 2u, 4u, 8u, 16u, 32u, 64u, 128u, 1024u}) {
        const RowMatrixXf x = gaussian(1, Eigen::Index(n), unsigned(n) + 3u);
        std::vector<float> a(x.data(), x.data() + n), b = a;
        ptq::ref::fwht(a.data(), n);
        ptq::fwht<Arch>(b.data(), n);
        CAPTURE(n);
        CHECK(std::memcmp(a.data(), b.data(), n * sizeof(float)) == 0);
    }
}

/// The toy model: embedding E [vocab x d]; two pre-norm blocks, each
///   a = rmsnorm(h, g_attn); h += (a Wv^T) Wo^T;
///   b = rmsnorm(h, g_mlp);  h += (silu(b W1^T) .* (b W3^T)) W2^T;
/// then logits = rmsnorm(h, g_final) C^T. `online` (optional) is applied to the rows of the
/// MLP's intermediate before W2 (the online transform of QuaRot).
struct Block {
    Eigen::VectorXf g_attn, g_mlp;
    RowMatrixXf wv, wo, w1, w3, w2;
};
struct Toy {
    RowMatrixXf emb, cls;
    Eigen::VectorXf g_final;
    Block blk[2];
};

RowMatrixXf rmsnorm(const RowMatrixXf& h, const Eigen::VectorXf& g) {
    RowMatrixXf out(h.rows(), h.cols());
    for (Eigen::Index t = 0; t < h.rows(); ++t) {
        const double ms = h.row(t).cast<double>().squaredNorm() / double(h.cols());
        const float inv = float(1.0 / std::sqrt(ms + 1e-5));
        out.row(t) = (h.row(t) * inv).cwiseProduct(g.transpose());
    }
    return out;
}

template <class Online>
RowMatrixXf forward(const Toy& m, const std::vector<int>& tokens, Online&& online) {
    RowMatrixXf h(Eigen::Index(tokens.size()), m.emb.cols());
    for (std::size_t t = 0; t < tokens.size(); ++t) h.row(Eigen::Index(t)) = m.emb.row(tokens[t]);
    for (const Block& b : m.blk) {
        const RowMatrixXf a = rmsnorm(h, b.g_attn);
        h += (a * b.wv.transpose()) * b.wo.transpose();
        const RowMatrixXf x = rmsnorm(h, b.g_mlp);
        const RowMatrixXf u = x * b.w1.transpose();
        RowMatrixXf mid = (u.array() / (1.0f + (-u.array()).exp())).matrix().cwiseProduct(x * b.w3.transpose());
        online(mid);
        h += mid * b.w2.transpose();
    }
    return rmsnorm(h, m.g_final) * m.cls.transpose();
}

Toy make_toy(Eigen::Index d, Eigen::Index f, Eigen::Index vocab, unsigned seed) {
    Toy m;
    m.emb = gaussian(vocab, d, seed);
    m.cls = gaussian(vocab, d, seed + 1, 0.3f);
    m.g_final = (gaussian(d, 1, seed + 2, 0.2f).array() + 1.0f).matrix();
    for (int l = 0; l < 2; ++l) {
        Block& b = m.blk[l];
        const unsigned s = seed + 10u * unsigned(l + 1);
        b.g_attn = (gaussian(d, 1, s, 0.2f).array() + 1.0f).matrix();
        b.g_mlp = (gaussian(d, 1, s + 1, 0.2f).array() + 1.0f).matrix();
        b.wv = gaussian(d, d, s + 2, 0.3f);
        b.wo = gaussian(d, d, s + 3, 0.3f);
        b.w1 = gaussian(f, d, s + 4, 0.3f);
        b.w3 = gaussian(f, d, s + 5, 0.3f);
        b.w2 = gaussian(d, f, s + 6, 0.3f);
    }
    return m;
}

/// Folds every norm weight and rotates the residual stream by q.
void fold_and_rotate(Toy& m, const Eigen::MatrixXd& q) {
    ptq::rotate_input(m.emb, q);  // embedding rows are stream vectors: E Q
    for (Block& b : m.blk) {
        ptq::fold_norm_weight(b.g_attn, {&b.wv});
        ptq::fold_norm_weight(b.g_mlp, {&b.w1, &b.w3});
        ptq::rotate_input(b.wv, q);
        ptq::rotate_input(b.w1, q);
        ptq::rotate_input(b.w3, q);
        ptq::rotate_output(b.wo, q);
        ptq::rotate_output(b.w2, q);
    }
    ptq::fold_norm_weight(m.g_final, {&m.cls});
    ptq::rotate_input(m.cls, q);
}

}  // namespace

TEST_SUITE("transform") {

TEST_CASE("fwht equals the product with the explicit Sylvester matrix, and is an involution") {
    for (std::size_t n : {1u, 2u, 8u, 64u, 256u}) {
        const RowMatrixXf x = gaussian(1, Eigen::Index(n), unsigned(n));
        std::vector<float> y(x.data(), x.data() + n);
        ptq::fwht(y.data(), n);
        const Eigen::VectorXd expect = sylvester(n) * x.row(0).transpose().cast<double>() / std::sqrt(double(n));
        const Eigen::VectorXd got = Eigen::Map<const Eigen::VectorXf>(y.data(), Eigen::Index(n)).cast<double>();
        CAPTURE(n);
        // log2(n) butterfly roundings and one scaling: |error| <= (log2 n + 1) 2^-24 sum|x| / sqrt n.
        const double bound = (std::log2(double(n)) + 1.0) * 0x1.0p-24 * x.cwiseAbs().sum() / std::sqrt(double(n));
        CHECK((got - expect).cwiseAbs().maxCoeff() <= bound);
        CHECK(ptq::hadamard_matrix(n).isApprox(sylvester(n) / std::sqrt(double(n)), 1e-15));
        ptq::fwht(y.data(), n);  // H H = I
        for (std::size_t i = 0; i < n; ++i) CHECK(y[i] == doctest::Approx(x(0, Eigen::Index(i))).epsilon(1e-5));
    }
    std::vector<float> v(12, 1.0f);
    CHECK_THROWS_WITH_AS(ptq::fwht(v.data(), 12), doctest::Contains("power of two"), ptq::invalid_argument);
}

TEST_CASE("fwht: SIMD equals the scalar reference bit for bit") {
    check_simd_equals_scalar<xsimd::default_arch>();
#if XSIMD_WITH_SSE2
    check_simd_equals_scalar<xsimd::sse2>();
#endif
    RowMatrixXf m = gaussian(3, 32, 9), r = m;
    ptq::fwht_rows(m);
    for (Eigen::Index t = 0; t < 3; ++t) ptq::ref::fwht(r.row(t).data(), 32);
    CHECK(m == r);
}

TEST_CASE("randomized Hadamard and random orthogonal matrices: orthogonal, deterministic by seed") {
    const ptq::RandomizedHadamard rh(64, 42);
    const Eigen::MatrixXd q = rh.matrix();
    CHECK((q * q.transpose() - Eigen::MatrixXd::Identity(64, 64)).cwiseAbs().maxCoeff() <= 1e-12);
    CHECK(ptq::RandomizedHadamard(64, 42).signs() == rh.signs());
    CHECK(ptq::RandomizedHadamard(64, 43).signs() != rh.signs());
    CHECK((rh.signs().array() == 1.0f).count() > 16);
    CHECK((rh.signs().array() == -1.0f).count() > 16);
    // apply(x) = Q x (float vs double): within the fwht bound.
    const RowMatrixXf x = gaussian(1, 64, 5);
    RowMatrixXf y = x;
    rh.apply_rows(y);
    const Eigen::VectorXd expect = q * x.row(0).transpose().cast<double>();
    CHECK((y.row(0).transpose().cast<double>() - expect).cwiseAbs().maxCoeff() <=
          7.0 * 0x1.0p-24 * x.cwiseAbs().sum() / 8.0);

    for (std::size_t n : {1u, 12u, 172u}) {
        const Eigen::MatrixXd o = ptq::random_orthogonal(n, 7);
        const auto ni = Eigen::Index(n);
        CAPTURE(n);
        CHECK((o * o.transpose() - Eigen::MatrixXd::Identity(ni, ni)).cwiseAbs().maxCoeff() <= 1e-12);
        // in float, as fused into the weights: Q Q^T = I to 1e-5
        const Eigen::MatrixXf of = o.cast<float>();
        CHECK((of * of.transpose() - Eigen::MatrixXf::Identity(ni, ni)).cwiseAbs().maxCoeff() <= 1e-5f);
        CHECK(ptq::random_orthogonal(n, 7) == o);
        if (n > 1) CHECK(ptq::random_orthogonal(n, 8) != o);
    }
    // The seeded source is fixed: these values hold on every platform.
    ptq::detail::SeededRandom g(1);
    const double u = g.uniform();
    std::mt19937_64 ref(1);
    CHECK(u == (double(ref() >> 11) + 0.5) * 0x1.0p-53);
    CHECK_THROWS_AS(ptq::random_orthogonal(0, 1), ptq::invalid_argument);
    CHECK_THROWS_AS(ptq::RandomizedHadamard(172, 1), ptq::invalid_argument);
}

TEST_CASE("computational invariance: folded norms + rotated residual give the same logits") {
    const std::vector<int> tokens{3, 0, 7, 7, 1, 9, 4};
    const auto none = [](RowMatrixXf&) {};
    for (const Eigen::Index d : {Eigen::Index(16), Eigen::Index(12)}) {
        const Toy orig = make_toy(d, 32, 10, 100u + unsigned(d));
        const RowMatrixXf ref = forward(orig, tokens, none);
        // Power of two: randomized Hadamard; otherwise a random orthogonal matrix.
        const Eigen::MatrixXd q = d == 16 ? ptq::RandomizedHadamard(16, 3).matrix() : ptq::random_orthogonal(12, 3);
        Toy rot = orig;
        fold_and_rotate(rot, q);
        CHECK(rot.g_final == Eigen::VectorXf::Ones(d));
        const RowMatrixXf got = forward(rot, tokens, none);
        CAPTURE(d);
        CHECK((got - ref).cwiseAbs().maxCoeff() <= 1e-4f * std::max(1.0f, ref.cwiseAbs().maxCoeff()));
        // The weights really changed (the test would see a missing rotation of any one of them).
        CHECK((rot.blk[0].w1 - orig.blk[0].w1).norm() > 0.1f * orig.blk[0].w1.norm());
        Toy broken = rot;
        broken.blk[1].wo = orig.blk[1].wo;
        CHECK((forward(broken, tokens, none) - ref).cwiseAbs().maxCoeff() > 1e-2f);

        // Online Hadamard on the W2 input: W2 <- W2 H (fused), mid <- mid H at run time.
        Toy online = rot;
        for (Block& b : online.blk) ptq::rotate_input(b.w2, ptq::hadamard_matrix(32));
        const RowMatrixXf got2 = forward(online, tokens, [](RowMatrixXf& mid) { ptq::fwht_rows(mid); });
        CHECK((got2 - ref).cwiseAbs().maxCoeff() <= 1e-4f * std::max(1.0f, ref.cwiseAbs().maxCoeff()));
    }
    RowMatrixXf w = gaussian(4, 6, 1);
    Eigen::VectorXf g = Eigen::VectorXf::Ones(5);
    CHECK_THROWS_WITH_AS(ptq::fold_norm_weight(g, {&w}), doctest::Contains("readers"), ptq::invalid_argument);
    CHECK_THROWS_WITH_AS(ptq::rotate_input(w, Eigen::MatrixXd::Identity(4, 4)), doctest::Contains("q"),
                         ptq::invalid_argument);
    CHECK_THROWS_AS(ptq::rotate_output(w, Eigen::MatrixXd::Identity(6, 6)), ptq::invalid_argument);
}

}  // TEST_SUITE("transform")
