// Tests of the real-model harness (tools/ptq: checkpoint, tokenizer, forward pass, recipes) and of ptq's RTN on a real
// model.
//
// Expected figures come from independent sources only:
//   * docs/DESIGN.md §16: fp32 mean NLL 1.2662 and RTN int4-asym-g32 mean NLL 1.3562 on
//     tinystories/valid.txt (232 stories, 84,382 predicted tokens), measured by an
//     independent fp64 implementation;
//   * the published stories260K greedy sample (llama2.c README, `run ... -t 0.0`).
// Tests that need ../shared/data are marked skipped (and say so on stderr) when it is absent;
// the synthetic-model, tokenizer-logic and hostile-file tests need no data.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "llama2c_checkpoint.hpp"
#include "llama2c_tokenizer.hpp"
#include "forward.hpp"
#include "evaluation.hpp"
#include "calibration_text.hpp"
#include "quantize_model.hpp"
#include "recipe.hpp"
#include "rotation.hpp"
#include "support.hpp"

#include <ptq/ptq.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace ptq::llama;
using namespace ptq_model_test;

namespace {

// Independent naive forward, one token at a time with a KV cache, written after llama2.c's
// run.c (scalar loops over raw row-major arrays, RoPE angle computed per run.c in float).
// Returns the logits of every position, [T][vocab].
std::vector<std::vector<float>> naive_forward(const Model& m, const std::vector<int>& tokens) {
    const Config& c = m.config;
    const int dim = c.dim, hid = c.hidden_dim, hs = dim / c.n_heads, kv_dim = hs * c.n_kv_heads,
              kv_mul = c.n_heads / c.n_kv_heads, T = static_cast<int>(tokens.size());
    auto matvec = [](std::vector<float>& out, const std::vector<float>& x, const RowMatrix& w) {
        const int d = static_cast<int>(w.rows()), n = static_cast<int>(w.cols());
        out.assign(static_cast<std::size_t>(d), 0.0f);
        for (int i = 0; i < d; ++i) {
            float s = 0.0f;
            for (int j = 0; j < n; ++j) s += w.data()[i * n + j] * x[static_cast<std::size_t>(j)];
            out[static_cast<std::size_t>(i)] = s;
        }
    };
    auto rmsnorm = [](std::vector<float>& o, const std::vector<float>& x, const Vector& w) {
        float ss = 0.0f;
        for (float v : x) ss += v * v;
        ss = 1.0f / std::sqrt(ss / static_cast<float>(x.size()) + 1e-5f);
        o.resize(x.size());
        for (std::size_t j = 0; j < x.size(); ++j) o[j] = w(static_cast<Eigen::Index>(j)) * (ss * x[j]);
    };
    std::vector<std::vector<std::vector<float>>> kcache(static_cast<std::size_t>(c.n_layers)),
        vcache(static_cast<std::size_t>(c.n_layers));
    std::vector<std::vector<float>> all_logits;
    std::vector<float> x(static_cast<std::size_t>(dim)), xb, xb2, q, k, v, hb, hb2, logits;
    for (int pos = 0; pos < T; ++pos) {
        for (int j = 0; j < dim; ++j)
            x[static_cast<std::size_t>(j)] = m.token_embedding(tokens[static_cast<std::size_t>(pos)], j);
        for (int l = 0; l < c.n_layers; ++l) {
            const Layer& L = m.layers[static_cast<std::size_t>(l)];
            rmsnorm(xb, x, L.rms_att);
            matvec(q, xb, L.wq);
            matvec(k, xb, L.wk);
            matvec(v, xb, L.wv);
            for (int i = 0; i < dim; i += 2) {
                const int head_dim = i % hs;
                const float freq = 1.0f / std::pow(10000.0f, static_cast<float>(head_dim) / static_cast<float>(hs));
                const float val = static_cast<float>(pos) * freq, fcr = std::cos(val), fci = std::sin(val);
                const int rotn = i < kv_dim ? 2 : 1;
                for (int r = 0; r < rotn; ++r) {
                    std::vector<float>& vec = r == 0 ? q : k;
                    const float v0 = vec[static_cast<std::size_t>(i)], v1 = vec[static_cast<std::size_t>(i + 1)];
                    vec[static_cast<std::size_t>(i)] = v0 * fcr - v1 * fci;
                    vec[static_cast<std::size_t>(i + 1)] = v0 * fci + v1 * fcr;
                }
            }
            kcache[static_cast<std::size_t>(l)].push_back(k);
            vcache[static_cast<std::size_t>(l)].push_back(v);
            xb.assign(static_cast<std::size_t>(dim), 0.0f);
            for (int h = 0; h < c.n_heads; ++h) {
                const int kvh = h / kv_mul;
                std::vector<float> att(static_cast<std::size_t>(pos + 1));
                float mx = -INFINITY;
                for (int t = 0; t <= pos; ++t) {
                    float s = 0.0f;
                    for (int i = 0; i < hs; ++i)
                        s += q[static_cast<std::size_t>(h * hs + i)] *
                             kcache[static_cast<std::size_t>(l)][static_cast<std::size_t>(t)]
                                   [static_cast<std::size_t>(kvh * hs + i)];
                    att[static_cast<std::size_t>(t)] = s / std::sqrt(static_cast<float>(hs));
                    mx = std::max(mx, att[static_cast<std::size_t>(t)]);
                }
                float sum = 0.0f;
                for (float& a : att) sum += (a = std::exp(a - mx));
                for (float& a : att) a /= sum;
                for (int t = 0; t <= pos; ++t)
                    for (int i = 0; i < hs; ++i)
                        xb[static_cast<std::size_t>(h * hs + i)] +=
                            att[static_cast<std::size_t>(t)] *
                            vcache[static_cast<std::size_t>(l)][static_cast<std::size_t>(t)]
                                  [static_cast<std::size_t>(kvh * hs + i)];
            }
            matvec(xb2, xb, L.wo);
            for (int j = 0; j < dim; ++j) x[static_cast<std::size_t>(j)] += xb2[static_cast<std::size_t>(j)];
            rmsnorm(xb, x, L.rms_ffn);
            matvec(hb, xb, L.w1);
            matvec(hb2, xb, L.w3);
            for (int i = 0; i < hid; ++i) {
                const float a = hb[static_cast<std::size_t>(i)];
                hb[static_cast<std::size_t>(i)] = a * (1.0f / (1.0f + std::exp(-a))) * hb2[static_cast<std::size_t>(i)];
            }
            matvec(xb2, hb, L.w2);
            for (int j = 0; j < dim; ++j) x[static_cast<std::size_t>(j)] += xb2[static_cast<std::size_t>(j)];
        }
        rmsnorm(xb, x, m.rms_final);
        matvec(logits, xb, c.shared_classifier ? m.token_embedding : m.classifier);
        all_logits.push_back(logits);
    }
    return all_logits;
}

// llama2.c's merge loop, verbatim in behaviour (O(n^2) rescans): the oracle for the heap BPE.
std::vector<int> naive_bpe(const Llama2cTokenizer& tok, const std::string& text) {
    std::vector<int> t{Tokenizer::kBos};
    if (!text.empty()) t.push_back(tok.lookup(" "));
    for (std::size_t i = 0; i < text.size();) {
        std::size_t j = i + 1;
        while (j < text.size() && j - i < 4 && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80) ++j;
        const int id = tok.lookup(text.substr(i, j - i));
        if (id >= 0) t.push_back(id);
        else
            for (std::size_t b = i; b < j; ++b) t.push_back(3 + static_cast<unsigned char>(text[b]));
        i = j;
    }
    while (true) {
        float best = -1e10f;
        int best_id = -1;
        std::size_t best_i = 0;
        for (std::size_t i = 0; i + 1 < t.size(); ++i) {  // run.c scans from the BOS token too
            const int id = tok.lookup(tok.piece(t[i]) + tok.piece(t[i + 1]));
            if (id != -1 && tok.score(id) > best) {
                best = tok.score(id);
                best_id = id;
                best_i = i;
            }
        }
        if (best_id == -1) break;
        t[best_i] = best_id;
        t.erase(t.begin() + static_cast<std::ptrdiff_t>(best_i) + 1);
    }
    return t;
}

// A synthetic vocabulary: <unk>, <s>, </s>, 256 byte tokens, then the given pieces.
Llama2cTokenizer synthetic_tokenizer(const std::vector<std::pair<std::string, float>>& extra) {
    std::vector<std::string> pieces{"<unk>", "\n<s>\n", "\n</s>\n"};
    std::vector<float> scores{0, 0, 0};
    for (int b = 0; b < 256; ++b) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        pieces.emplace_back(buf);
        scores.push_back(0);
    }
    for (const auto& [p, s] : extra) {
        pieces.push_back(p);
        scores.push_back(s);
    }
    return Llama2cTokenizer::from_pieces(pieces, scores);
}

// Runs f, which must throw FormatError; returns the message.
template <class F>
std::string format_error_message(F&& f) {
    try {
        f();
    } catch (const FormatError& e) {
        return e.what();
    } catch (const std::exception& e) {
        FAIL("expected ptq::llama::FormatError, got another exception: " << e.what());
        return {};
    }
    FAIL("expected ptq::llama::FormatError, nothing was thrown");
    return {};
}

}  // namespace

// =============================================================================================
// Synthetic model: file round trip and forward pass against the naive per-token reference
// =============================================================================================

TEST_CASE("synthetic model: save/load round trip and forward == naive per-token forward") {
    for (bool shared : {false, true}) {
        CAPTURE(shared);
        TempDir tmp;
        const Model ref = random_model(shared, shared ? 7u : 11u);
        const fs::path file = tmp.path / "tiny.bin";
        save_checkpoint(ref, file);
        // Header: negative vocab signals the separate classifier.
        const std::vector<char> bytes = read_bytes(file);
        REQUIRE(bytes.size() >= 28);
        std::int32_t vocab_field;
        std::memcpy(&vocab_field, bytes.data() + 20, 4);
        CHECK(vocab_field == (shared ? 32 : -32));
        CHECK(bytes.size() == 28 + 4 * checkpoint_float_count(ref.config));

        const Model m = load_checkpoint(file);
        CHECK(m.config.dim == 16);
        CHECK(m.config.hidden_dim == 24);
        CHECK(m.config.n_layers == 2);
        CHECK(m.config.n_heads == 2);
        CHECK(m.config.n_kv_heads == 1);
        CHECK(m.config.kv_dim() == 8);
        CHECK(m.config.vocab_size == 32);
        CHECK(m.config.seq_len == 16);
        CHECK(m.config.shared_classifier == shared);
        CHECK(m.token_embedding == ref.token_embedding);
        CHECK(m.layers[1].wk == ref.layers[1].wk);
        CHECK(m.layers[0].w2 == ref.layers[0].w2);
        CHECK(m.rms_final == ref.rms_final);
        if (!shared) CHECK(m.classifier == ref.classifier);
        CHECK(&m.output_weights() == (shared ? &m.token_embedding : &m.classifier));

        const std::vector<int> tokens{1, 5, 31, 0, 7, 7, 12, 3, 30, 2, 9, 18, 4, 25, 16, 8};  // T = seq_len
        const RowMatrix logits = forward(m, tokens);
        const auto naive = naive_forward(m, tokens);
        REQUIRE(logits.rows() == 16);
        REQUIRE(logits.cols() == 32);
        // Error relative to the logit scale of the row (float summation order differs between the
        // blocked GEMMs and the scalar loops; the largest logits here are ~10).
        float worst = 0.0f;
        for (int t = 0; t < 16; ++t) {
            const auto& row = naive[static_cast<std::size_t>(t)];
            float scale = 1.0f;
            for (float z : row) scale = std::max(scale, std::abs(z));
            for (int v = 0; v < 32; ++v)
                worst = std::max(worst, std::abs(logits(t, v) - row[static_cast<std::size_t>(v)]) / scale);
        }
        MESSAGE("max |batched - naive| / max(1, max |naive logit| of the row) = " << worst);
        CHECK(worst < 1e-5f);

        // NLL against a double log-softmax of the naive logits.
        double naive_nll = 0.0;
        for (std::size_t t = 0; t + 1 < tokens.size(); ++t) {
            const auto& row = naive[t];
            const double mx = *std::max_element(row.begin(), row.end());
            double s = 0.0;
            for (float z : row) s += std::exp(static_cast<double>(z) - mx);
            naive_nll += mx + std::log(s) - static_cast<double>(row[static_cast<std::size_t>(tokens[t + 1])]);
        }
        CHECK(sequence_nll(m, tokens) == doctest::Approx(naive_nll).epsilon(1e-5));

        // Prefix property of causal attention: logits of a prefix equal the first rows.
        const RowMatrix prefix = forward(m, std::span<const int>(tokens).first(5));
        // (Different T changes Eigen's GEMM blocking, hence summation order: relative tolerance.)
        CHECK((prefix - logits.topRows(5)).cwiseAbs().maxCoeff() < 1e-5f * (1.0f + logits.cwiseAbs().maxCoeff()));

        CHECK_THROWS_AS(forward(m, std::vector<int>(17, 1)), std::invalid_argument);  // > seq_len
        CHECK_THROWS_AS(forward(m, std::vector<int>{1, 32}), std::out_of_range);      // bad id
        CHECK_THROWS_AS(forward(m, std::vector<int>{-1}), std::out_of_range);
    }
}

TEST_CASE("synthetic model: for_each_linear and the activation hook") {
    Model m = random_model(false, 3);
    SUBCASE("for_each_linear visits the seven linears of every layer in order, mutably") {
        std::vector<std::string> seen;
        m.for_each_linear([&](int l, std::string_view name, RowMatrix& w) {
            seen.push_back(std::to_string(l) + std::string(name));
            w.setZero();
        });
        const std::vector<std::string> expected{"0wq", "0wk", "0wv", "0wo", "0w1", "0w2", "0w3",
                                                "1wq", "1wk", "1wv", "1wo", "1w1", "1w2", "1w3"};
        CHECK(seen == expected);
        CHECK(m.layers[1].w3.isZero());
        CHECK(m.layers[0].wq.isZero());
        CHECK_FALSE(m.token_embedding.isZero());  // embedding / classifier not visited
        CHECK_FALSE(m.classifier.isZero());
        // With every linear zero, the residual stream is the embedding: logits are
        // rmsnorm(emb) * classifier^T. Checks that the replaced weights are the ones used.
        const std::vector<int> toks{4, 9};
        const RowMatrix logits = forward(m, toks);
        for (int t = 0; t < 2; ++t) {
            const Eigen::RowVectorXf e = m.token_embedding.row(toks[static_cast<std::size_t>(t)]);
            const float inv = 1.0f / std::sqrt(e.squaredNorm() / 16.0f + 1e-5f);
            const Eigen::RowVectorXf xn = (e * inv).cwiseProduct(m.rms_final.transpose());
            CHECK((logits.row(t) - xn * m.classifier.transpose()).cwiseAbs().maxCoeff() < 1e-5f);
        }
    }
    SUBCASE("a callback that changes a shape is rejected") {
        CHECK_THROWS_AS(m.for_each_linear([](int, std::string_view, RowMatrix& w) { w.resize(1, 1); }),
                        std::logic_error);
    }
    SUBCASE("the hook sees the input of every linear, and Y = X W^T reproduces the layer") {
        const std::vector<int> toks{1, 2, 3, 4, 5};
        std::vector<std::string> calls;
        RowMatrix wq_in, w1_in, w2_in, wo_in;
        const ActivationHook hook = [&](int l, std::string_view name, const RowMatrix& x) {
            calls.push_back(std::to_string(l) + std::string(name));
            CHECK(x.rows() == 5);
            CHECK(x.cols() == m.layers[static_cast<std::size_t>(l)].linear(name).cols());
            if (l == 0 && name == "wq") wq_in = x;
            if (l == 0 && name == "w1") w1_in = x;
            if (l == 0 && name == "w2") w2_in = x;
            if (l == 0 && name == "wo") wo_in = x;
        };
        const RowMatrix with_hook = forward(m, toks, hook);
        CHECK(with_hook == forward(m, toks));  // the hook observes, it does not change the result
        CHECK(calls.size() == 14);
        CHECK(calls.front() == "0wq");
        // Layer 0, first position: the wq input is rmsnorm(embedding(token 1)).
        const Eigen::RowVectorXf e = m.token_embedding.row(1);
        const float inv = 1.0f / std::sqrt(e.squaredNorm() / 16.0f + 1e-5f);
        CHECK((wq_in.row(0) - (e * inv).cwiseProduct(m.layers[0].rms_att.transpose())).cwiseAbs().maxCoeff() < 1e-6f);
        // First position attends only to itself: attention output = v of position 0 per head.
        const Eigen::RowVectorXf v0 = wq_in.row(0) * m.layers[0].wv.transpose();
        CHECK((wo_in.row(0).head(8) - v0).cwiseAbs().maxCoeff() < 1e-5f);
        CHECK((wo_in.row(0).tail(8) - v0).cwiseAbs().maxCoeff() < 1e-5f);  // GQA: both heads share kv head 0
        // w2 input = silu(w1 x) * (w3 x) with x the w1 input.
        const RowMatrix a = w1_in * m.layers[0].w1.transpose(), b = w1_in * m.layers[0].w3.transpose();
        const RowMatrix gated = (a.array() / (1.0f + (-a.array()).exp()) * b.array()).matrix();
        CHECK((w2_in - gated).cwiseAbs().maxCoeff() < 1e-5f);
    }
}

// =============================================================================================
// Tokenizer logic (synthetic vocabulary) and story splitting
// =============================================================================================

TEST_CASE("tokenizer: BPE merge order, ties, byte fallback and UTF-8 grouping (synthetic vocab)") {
    // ids: 259 " ", 260 "a", 261 "b", 262 "ab", 263 "ba", 264 " ab", 265 "é"
    const Llama2cTokenizer tok = synthetic_tokenizer(
        {{" ", 0.f}, {"a", 0.f}, {"b", 0.f}, {"ab", 1.f}, {"ba", 1.f}, {" ab", 0.5f}, {"\xc3\xa9", 0.f}});
    CHECK(tok.encode("") == std::vector<int>{1});  // no dummy prefix for empty text
    CHECK(tok.encode("", false).empty());
    // "aba": "ab" and "ba" tie at score 1 -> the leftmost pair merges first; then " " + "ab".
    CHECK(tok.encode("aba") == std::vector<int>{1, 264, 260});
    CHECK(tok.encode("aba", true, true) == std::vector<int>{1, 264, 260, 2});
    // "bab": " b" is not a piece; "ba" and "ab" tie at score 1 -> leftmost "ba" -> " ", "ba", "b".
    CHECK(tok.encode("bab") == std::vector<int>{1, 259, 263, 261});
    // UTF-8: "é" is a piece; "ü" (C3 BC) is not -> one byte token per byte (3 + byte).
    CHECK(tok.encode("\xc3\xa9") == std::vector<int>{1, 259, 265});
    CHECK(tok.encode("\xc3\xbc") == std::vector<int>{1, 259, 3 + 0xC3, 3 + 0xBC});
    CHECK(tok.encode(std::string("\x01", 1)) == std::vector<int>{1, 259, 4});
    CHECK(tok.encode(std::string("\0", 1)) == std::vector<int>{1, 259, 3});
    // A stray continuation byte starts its own character.
    CHECK(tok.encode("\xbc"
                     "a") == std::vector<int>{1, 259, 3 + 0xBC, 260});
    // decode: byte tokens become bytes; leading space kept; decode_piece strips it after BOS.
    CHECK(tok.decode(tok.encode("ab\xc3\xbc\x01")) == " ab\xc3\xbc\x01");
    CHECK(tok.decode_piece(1, 264) == "ab");
    CHECK(tok.decode_piece(260, 264) == " ab");
}

TEST_CASE("split_stories: separators on their own line, stripping, empty stories dropped") {
    const std::string text =
        "  first story\nline two\n<|endoftext|>\n\nsecond <|endoftext|> inline\n"
        "<|endoftext|>\r\n \n\t\n<|endoftext|>\nthird\n";
    const auto s = split_stories(text);
    REQUIRE(s.size() == 3);
    CHECK(s[0] == "first story\nline two");
    CHECK(s[1] == "second <|endoftext|> inline");
    CHECK(s[2] == "third");
    CHECK(split_stories("").empty());
    CHECK(split_stories("<|endoftext|>\n<|endoftext|>").empty());
    const auto docs = encode_stories(synthetic_tokenizer({{" ", 0.f}}), {"abcdef"}, 4);
    REQUIRE(docs.size() == 1);
    CHECK(docs[0].size() == 4);  // truncated to max_tokens, BOS first
    CHECK(docs[0][0] == 1);
}

// =============================================================================================
// Hostile files: clear exceptions, no crash, no huge allocation (no shared data needed)
// =============================================================================================

TEST_CASE("hostile checkpoints are rejected with a message naming the file and the problem") {
    TempDir tmp;
    const Model ref = random_model(false, 5);
    const fs::path good = tmp.path / "good.bin";
    save_checkpoint(ref, good);
    const std::vector<char> bytes = read_bytes(good);
    REQUIRE_NOTHROW(load_checkpoint(good));

    SUBCASE("missing file") {
        const std::string msg = format_error_message([&] { load_checkpoint(tmp.path / "nope.bin"); });
        CHECK(contains(msg, "nope.bin"));
    }
    SUBCASE("truncated files") {
        for (std::size_t keep : {std::size_t{0}, std::size_t{10}, std::size_t{28}, std::size_t{100}, bytes.size() / 2,
                                 bytes.size() - 4, bytes.size() - 1}) {
            CAPTURE(keep);
            const fs::path p = tmp.path / ("trunc_" + std::to_string(keep) + ".bin");
            write_bytes(p, std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
            const std::string msg = format_error_message([&] { load_checkpoint(p); });
            CHECK(contains(msg, p.filename().string()));
            CHECK((contains(msg, "truncated") || contains(msg, "shorter")));
        }
    }
    SUBCASE("trailing bytes / wrong classifier flag") {
        std::vector<char> longer = bytes;
        longer.push_back('x');
        write_bytes(tmp.path / "long.bin", longer);
        CHECK(contains(format_error_message([&] { load_checkpoint(tmp.path / "long.bin"); }), "trailing"));
        std::vector<char> flipped = bytes;  // claims a shared classifier: file too long by vocab*dim floats
        const std::int32_t pos_vocab = 32;
        std::memcpy(flipped.data() + 20, &pos_vocab, 4);
        write_bytes(tmp.path / "flipped.bin", flipped);
        CHECK(contains(format_error_message([&] { load_checkpoint(tmp.path / "flipped.bin"); }), "flipped.bin"));
    }
    SUBCASE("garbage headers") {
        struct Case {
            const char* name;
            std::vector<std::int32_t> h;
            const char* expect;
        };
        const std::int32_t big = 1 << 30, imin = std::numeric_limits<std::int32_t>::min();
        const std::vector<Case> cases{
            {"neg_dim", {-16, 24, 2, 2, 1, 32, 16}, "dim"},
            {"zero_dim", {0, 24, 2, 2, 1, 32, 16}, "dim"},
            {"neg_hidden", {16, -24, 2, 2, 1, 32, 16}, "hidden_dim"},
            {"zero_layers", {16, 24, 0, 2, 1, 32, 16}, "n_layers"},
            {"neg_heads", {16, 24, 2, -2, 1, 32, 16}, "n_heads"},
            {"zero_kv_heads", {16, 24, 2, 2, 0, 32, 16}, "n_kv_heads"},
            {"zero_vocab", {16, 24, 2, 2, 1, 0, 16}, "vocab"},
            {"min_vocab", {16, 24, 2, 2, 1, imin, 16}, "vocab"},
            {"neg_seq", {16, 24, 2, 2, 1, 32, -16}, "seq_len"},
            {"dim_not_div_heads", {16, 24, 2, 3, 1, 32, 16}, "divisible"},
            {"heads_not_div_kv", {16, 24, 2, 4, 3, 32, 16}, "divisible"},
            {"kv_more_than_heads", {16, 24, 2, 2, 4, 32, 16}, "divisible"},
            {"odd_head_size", {18, 24, 2, 2, 1, 32, 16}, "even"},
            {"huge_dims", {big, big, big, 2, 1, big, big}, "overflow"},
            {"huge_vocab", {16, 24, 2, 2, 1, big, 16}, "implies"},
            {"huge_seq", {16, 24, 2, 2, 1, 32, big}, "implies"},
            {"huge_hidden", {16, big, 2, 2, 1, -32, 16}, "implies"},
        };
        for (const auto& c : cases) {
            CAPTURE(c.name);
            std::vector<char> b = header_bytes(c.h[0], c.h[1], c.h[2], c.h[3], c.h[4], c.h[5], c.h[6]);
            b.insert(b.end(), bytes.begin() + 28, bytes.end());  // a plausible body after the bad header
            const fs::path p = tmp.path / (std::string(c.name) + ".bin");
            write_bytes(p, b);
            const std::string msg = format_error_message([&] { load_checkpoint(p); });
            CHECK(contains(msg, p.filename().string()));
            CHECK(contains(msg, c.expect));
        }
    }
}

TEST_CASE("hostile tokenizer files are rejected with a clear message") {
    TempDir tmp;
    // A valid 260-token file: max_token_length 6, <unk>,<s>,</s>, 256 byte tokens, " a".
    std::vector<char> good;
    append<std::int32_t>(good, 6);
    auto add_token = [](std::vector<char>& b, float score, const std::string& s) {
        append(b, score);
        append<std::int32_t>(b, static_cast<std::int32_t>(s.size()));
        b.insert(b.end(), s.begin(), s.end());
    };
    add_token(good, 0.f, "<unk>");
    add_token(good, 0.f, "<s>");
    add_token(good, 0.f, "</s>");
    for (int i = 0; i < 256; ++i) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", i);
        add_token(good, 0.f, buf);
    }
    add_token(good, -1.f, " a");
    write_bytes(tmp.path / "tok.bin", good);
    {
        const Llama2cTokenizer t = Llama2cTokenizer::load(tmp.path / "tok.bin", 260);
        CHECK(t.vocab_size() == 260);
        CHECK(t.piece(259) == " a");
        CHECK(t.max_token_length() == 6);
        CHECK(Llama2cTokenizer::load(tmp.path / "tok.bin").vocab_size() == 260);  // read to EOF
    }
    auto expect_error = [&](const std::string& name, const std::vector<char>& b, int vocab, const std::string& what) {
        CAPTURE(name);
        const fs::path p = tmp.path / name;
        write_bytes(p, b);
        const std::string msg = format_error_message([&] { Llama2cTokenizer::load(p, vocab); });
        CHECK(contains(msg, name));
        CHECK(contains(msg, what));
    };
    expect_error("empty.bin", {}, 260, "shorter");
    for (std::size_t keep : {std::size_t{6}, std::size_t{30}, good.size() - 1}) {
        expect_error("trunc" + std::to_string(keep) + ".bin",
                     std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(keep)), 260,
                     "end of file");
    }
    expect_error("fewer.bin", good, 300, "truncated");
    expect_error("more.bin", good, 259, "trailing");
    {
        std::vector<char> b = good;
        const std::int32_t zero = 0;
        std::memcpy(b.data(), &zero, 4);
        expect_error("mtl0.bin", b, 260, "max_token_length");
    }
    {
        std::vector<char> b = good;  // first token length -> -5
        const std::int32_t neg = -5;
        std::memcpy(b.data() + 8, &neg, 4);
        expect_error("neglen.bin", b, 260, "length -5");
    }
    {
        std::vector<char> b = good;  // first token length -> 2^30 (beyond the file and max length)
        const std::int32_t huge = 1 << 30;
        std::memcpy(b.data() + 8, &huge, 4);
        expect_error("hugelen.bin", b, 260, "length");
    }
    {
        std::vector<char> small;  // too few tokens for the byte fallback
        append<std::int32_t>(small, 6);
        add_token(small, 0.f, "<unk>");
        expect_error("small.bin", small, 0, "byte fallback");
    }
    CHECK(contains(format_error_message([&] { Llama2cTokenizer::load(tmp.path / "missing_dir" / "none.bin", 260); }),
                   "none.bin"));
}

// =============================================================================================
// The real model (../shared/data)
// =============================================================================================

TEST_CASE("real tokenizer: BOS, dummy prefix, round trip, byte fallback, agreement with run.c's loop" *
          doctest::skip(!have_data())) {
    const Llama2cTokenizer& tok = real().tok;
    REQUIRE(tok.vocab_size() == 512);
    CHECK(tok.lookup(" ") >= 0);
    for (const std::string text :
         {"Once upon a time, there was a little girl named Lily.", "Tom said, \"Let's go!\"\nThe end.",
          "caf\xc3\xa9 \xc3\xbc{}\x01 \xe2\x80\x9cquoted\xe2\x80\x9d"}) {
        CAPTURE(text);
        const std::vector<int> ids = tok.encode(text);
        REQUIRE(ids.size() >= 2);
        CHECK(ids[0] == Tokenizer::kBos);
        CHECK(ids.size() < text.size() + 2);   // merges happened
        CHECK(tok.decode(ids) == " " + text);  // lossless, with the dummy-prefix space
        CHECK(ids == naive_bpe(tok, text));
        // Termination condition of BPE: no adjacent pair is a mergeable piece any more.
        for (std::size_t i = 1; i + 1 < ids.size(); ++i) {
            const int id = tok.lookup(tok.piece(ids[i]) + tok.piece(ids[i + 1]));
            CHECK((id < 0 || !(tok.score(id) > -1e10f)));
        }
    }
    // Byte fallback: "\x01", "{" and "ü" have no piece of their own; "é" does.
    REQUIRE(tok.lookup("\x01") < 0);
    REQUIRE(tok.lookup("\xc3\xbc") < 0);
    REQUIRE(tok.lookup("{") < 0);
    CHECK(tok.encode("\x01", false) == std::vector<int>{tok.lookup(" "), 3 + 1});
    const std::vector<int> u = tok.encode("\xc3\xbc", false);
    CHECK(u == std::vector<int>{tok.lookup(" "), 3 + 0xC3, 3 + 0xBC});
    CHECK(tok.token_bytes(3 + 0xC3) == "\xc3");
    const int e_acute = tok.lookup("\xc3\xa9");
    REQUIRE(e_acute >= 0);
    CHECK(tok.encode("\xc3\xa9", false) == std::vector<int>{tok.lookup(" "), e_acute});
    // The heap-based encoder agrees with run.c's O(n^2) loop on the first 40 evaluation stories.
    const auto stories = split_stories(read_text_file(valid_path()));
    for (std::size_t i = 0; i < 40 && i < stories.size(); ++i) {
        CAPTURE(i);
        CHECK(tok.encode(stories[i]) == naive_bpe(tok, stories[i]));
    }
}

TEST_CASE("real model: header, RoPE convention, greedy decoding reproduces the published sample" *
          doctest::skip(!have_data())) {
    const Model& m = real().model;
    CHECK(m.config.dim == 64);
    CHECK(m.config.hidden_dim == 172);
    CHECK(m.config.n_layers == 5);
    CHECK(m.config.n_heads == 8);
    CHECK(m.config.n_kv_heads == 4);
    CHECK(m.config.vocab_size == 512);
    CHECK(m.config.seq_len == 512);
    CHECK(m.config.shared_classifier);
    CHECK(fs::file_size(model_path()) == 28 + 4 * 264128);  // data README
    // The legacy freq_cis tables stored by the exporter encode the same RoPE convention that
    // the forward pass computes (adjacent pairs, theta 10000).
    CHECK((m.rope_cos - m.legacy_rope_cos).cwiseAbs().maxCoeff() < 1e-5f);
    CHECK((m.rope_sin - m.legacy_rope_sin).cwiseAbs().maxCoeff() < 1e-5f);

    // llama2.c README, stories260K, `./run stories260K.bin -z tok512.bin -t 0.0`:
    const std::string published =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
        "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
        "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. "
        "She said, \"I want to play with your ball, but I can't find it.\"\n";
    const std::vector<int> gen = generate_greedy(m, {Tokenizer::kBos}, 100);
    std::string text;
    int prev = Tokenizer::kBos;
    for (int id : gen) {
        text += real().tok.decode_piece(prev, id);
        prev = id;
    }
    MESSAGE("greedy: " << text);
    REQUIRE(text.size() > 200);
    const std::string head = text.substr(0, std::min(text.size(), published.size()));
    CHECK(head == published.substr(0, head.size()));
}

TEST_CASE("real model: fp32 mean NLL on tinystories/valid.txt (docs/DESIGN.md §16)" * doctest::skip(!have_data())) {
    const RealData& d = real();
    const auto t0 = std::chrono::steady_clock::now();
    const EvalResult r = evaluate(d.model, d.docs);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("fp32: stories " << r.sequences << ", predicted tokens " << r.predicted_tokens << ", mean NLL "
                             << r.mean_nll() << ", ppl " << r.perplexity() << ", " << secs << " s");
    CHECK(r.sequences == 232);
    CHECK(r.predicted_tokens == 84382);
    CHECK(std::abs(r.mean_nll() - 1.2662) <= 1e-3);
    CHECK(r.perplexity() == doctest::Approx(3.547).epsilon(2e-3));
    // evaluate() runs the sequences on ptq's threads: the sum is still the serial one, bit for
    // bit (oracle: a plain loop over sequence_nll), whatever the thread count.
    const std::vector<std::vector<int>> sub(d.docs.begin(), d.docs.begin() + 40);
    double serial = 0.0;
    for (const auto& doc : sub) serial += sequence_nll(d.model, doc);
    for (const std::size_t threads : {1, 2, 3}) {
        CAPTURE(threads);
        ptq::set_num_threads(threads);
        CHECK(evaluate(d.model, sub).nll_sum == serial);
    }
    ptq::set_num_threads(0);
}

TEST_CASE("real model: ptq RTN int4 asym g32 (widened to 0, half-to-even) mean NLL (docs/DESIGN.md §16)" *
          doctest::skip(!have_data())) {
    const RealData& d = real();
    Model m = d.model;
    int visited = 0;
    m.for_each_linear([&](int, std::string_view, RowMatrix& w) {
        const RowMatrix before = w;
        w = ptq::fake_quantize<ptq::IntFormat<4, false>>(w, {}, ptq::PerGroup<32>{});
        CHECK(w != before);  // quantization changed something
        ++visited;
    });
    CHECK(visited == 35);
    CHECK(m.token_embedding == d.model.token_embedding);  // embedding / classifier stay fp32
    const EvalResult r = evaluate(m, d.docs);
    MESSAGE("rtn-int4-asym-g32: mean NLL " << r.mean_nll() << " (fp32 reference 1.2662)");
    CHECK(r.predicted_tokens == 84382);
    CHECK(std::abs(r.mean_nll() - 1.3562) <= 1e-3);
}

// =============================================================================================
// Quantization harness: forward extras, recipe parser, calibration, recipes on the real model
// =============================================================================================

TEST_CASE("synthetic model: per-channel input scales and low-rank extras in the forward pass") {
    const Model m = random_model(true, 11);
    const std::vector<int> toks{1, 5, 7, 3, 2, 9};
    const RowMatrix ref = forward(m, toks);
    Model t = m;
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(0.25f, 4.0f);
    // y = (x / s) (W s)^T == x W^T for every linear (explicit scales instead of folding).
    for (auto& L : t.layers)
        for (int i = 0; i < 7; ++i) {
            RowMatrix& w = L.linear(kLinearNames[i]);
            Vector sc(w.cols());
            for (Eigen::Index j = 0; j < sc.size(); ++j) sc(j) = u(rng);
            if (i == 1 || i == 2) sc = L.extras[0].inv_scale.cwiseInverse();  // q/k/v share one s
            if (i == 6) sc = L.extras[4].inv_scale.cwiseInverse();            // w1/w3 share one s
            w = w * sc.asDiagonal();
            L.extras[i].inv_scale = sc.cwiseInverse();
        }
    CHECK((forward(t, toks) - ref).cwiseAbs().maxCoeff() < 1e-4f * (1.0f + ref.cwiseAbs().maxCoeff()));
    // W = W0 - A B plus the low-rank path A (B x) reproduces W0.
    Model lr = m;
    for (auto& L : lr.layers)
        for (int i = 0; i < 7; ++i) {
            RowMatrix& w = L.linear(kLinearNames[i]);
            L.extras[i].lr_a = RowMatrix::Random(w.rows(), 2);
            L.extras[i].lr_b = RowMatrix::Random(2, w.cols());
            w -= L.extras[i].lr_a * L.extras[i].lr_b;
        }
    CHECK((forward(lr, toks) - ref).cwiseAbs().maxCoeff() < 1e-4f * (1.0f + ref.cwiseAbs().maxCoeff()));
    // An activation quantizer sees the input of every linear (once per shared input: q/k/v,
    // wo, w1/w3, w2 = 4 per layer) and the low-rank intermediate x B^T (7 per layer); an
    // identity one changes nothing.
    int calls = 0;
    lr.act_quant = [&](RowMatrix&) { ++calls; };
    CHECK((forward(lr, toks) - ref).cwiseAbs().maxCoeff() < 1e-4f * (1.0f + ref.cwiseAbs().maxCoeff()));
    CHECK(calls == 2 * (4 + 7));  // q/k/v and w1/w3 share one prepared input
    // layer_forward with stop_after returns right after that linear's hook.
    RowMatrix x = embed(m, toks);
    std::vector<std::string> seen;
    layer_forward(
        m, 0, x, [&](int, std::string_view n, const RowMatrix&) { seen.emplace_back(n); }, 3);
    CHECK(seen == std::vector<std::string>{"wq", "wk", "wv", "wo"});
}

TEST_CASE("synthetic model: rotation (folded norms, rotated residual, online w2 transform) keeps the logits") {
    // dim 16 (a power of two: hadamard and random), hidden 24 (not: the online matrix is random
    // orthogonal). The oracle is the unrotated model's own forward pass.
    const std::vector<int> toks{1, 5, 31, 0, 7, 7, 12, 3, 30, 2, 9, 18, 4, 25, 16, 8};
    for (bool shared : {true, false})
        for (RotationKind kind : {RotationKind::hadamard, RotationKind::random})
            for (bool online : {false, true}) {
                CAPTURE(shared);
                const std::string name = rotation_kind_name(kind);
                CAPTURE(name);
                CAPTURE(online);
                const Model m = random_model(shared, 31);
                const RowMatrix ref = forward(m, toks);
                const Rotation rot = make_rotation(m.config, kind, 5, online);
                CHECK(rot.residual.rows() == 16);
                CHECK((rot.residual * rot.residual.transpose() - Eigen::MatrixXd::Identity(16, 16)).norm() < 1e-12);
                CHECK(rot.metadata_bits == (online ? 32.0 * 24 * 24 : 0.0));
                Model r = m;
                rotate_model(r, rot);
                CHECK_FALSE(r.config.shared_classifier);  // the classifier is a matrix of its own now
                CHECK(r.classifier.rows() == 32);
                CHECK(r.rms_final == Vector::Ones(16));
                CHECK(r.layers[1].rms_att == Vector::Ones(16));
                CHECK(r.layers[0].rms_ffn == Vector::Ones(16));
                CHECK(r.w2_input_rotation.rows() == (online ? 24 : 0));
                // Every rotated matrix really changed (a missing rotation of any would show).
                for (std::size_t l = 0; l < 2; ++l)
                    for (auto name : kLinearNames) {
                        const RowMatrix& w0 = m.layers[l].linear(name);
                        CHECK((r.layers[l].linear(name) - w0).norm() > 0.1f * w0.norm());
                    }
                CHECK((r.token_embedding - m.token_embedding).norm() > 0.1f * m.token_embedding.norm());
                const RowMatrix got = forward(r, toks);
                const float tol = 1e-4f * std::max(1.0f, ref.cwiseAbs().maxCoeff());
                CHECK((got - ref).cwiseAbs().maxCoeff() <= tol);
                // The forward pass uses each rotated piece: undo one and the logits move.
                Model broken = r;
                broken.layers[1].wo = m.layers[1].wo;
                CHECK((forward(broken, toks) - ref).cwiseAbs().maxCoeff() > 100 * tol);
                if (online) {
                    Model no_online = r;
                    no_online.w2_input_rotation.resize(0, 0);
                    CHECK((forward(no_online, toks) - ref).cwiseAbs().maxCoeff() > 100 * tol);
                }
            }
    // Layer by layer gives the same model as rotate_model.
    {
        const Model m = random_model(true, 4);
        const Rotation rot = make_rotation(m.config, RotationKind::random, 9, true);
        Model a = m, b = m;
        rotate_model(a, rot);
        rotate_ends(b, rot);
        for (Layer& L : b.layers) rotate_layer(L, b.config, rot);
        CHECK(a.token_embedding == b.token_embedding);
        CHECK(a.classifier == b.classifier);
        CHECK(a.layers[1].w2 == b.layers[1].w2);
        CHECK(a.w2_input_rotation == b.w2_input_rotation);
    }
    // A power-of-two hidden size gets a randomized Hadamard online matrix (sign bits only).
    {
        Config c = random_model(true, 1).config;
        c.hidden_dim = 32;
        const Rotation h = make_rotation(c, RotationKind::hadamard, 2, true);
        CHECK(h.metadata_bits == 32.0);
        CHECK(h.w2_input.cwiseAbs().minCoeff() == doctest::Approx(1.0 / std::sqrt(32.0)));
        CHECK(make_rotation(c, RotationKind::random, 2, true).metadata_bits == 32.0 * 32 * 32);
        CHECK(make_rotation(c, RotationKind::none, 2, false).empty());
    }
    // Errors: a non-power-of-two dim for hadamard, a quantized layer, a second online rotation.
    {
        Config c = random_model(true, 1).config;
        c.dim = 12;
        CHECK_THROWS_WITH_AS(make_rotation(c, RotationKind::hadamard, 0, false), doctest::Contains("kind"),
                             ptq::invalid_argument);
        CHECK(make_rotation(c, RotationKind::random, 0, false).residual.rows() == 12);
        Model m = random_model(true, 2);
        const Rotation rot = make_rotation(m.config, RotationKind::hadamard, 0, true);
        Model q = m;
        q.layers[1].extras[5].inv_scale = Vector::Ones(24);
        CHECK_THROWS_WITH_AS(rotate_model(q, rot), doctest::Contains("extras"), ptq::invalid_argument);
        CHECK(q.token_embedding == m.token_embedding);  // refused before anything changed
        CHECK(q.config.shared_classifier);
        rotate_model(m, rot);
        CHECK_THROWS_WITH_AS(rotate_model(m, rot), doctest::Contains("already has an online rotation"),
                             ptq::invalid_argument);
        Layer L = random_model(true, 2).layers[0];
        CHECK_THROWS_AS(rotate_layer(L, c, make_rotation(c, RotationKind::random, 0, false)), ptq::invalid_argument);
    }
}

TEST_CASE("real model: the rotated fp32 model has the original's mean NLL to 1e-4" * doctest::skip(!have_data())) {
    const RealData& d = real();
    const double ref = evaluate(d.model, d.docs).mean_nll();
    for (RotationKind kind : {RotationKind::hadamard, RotationKind::random})
        for (bool online : {false, true}) {
            const std::string name = rotation_kind_name(kind);
            CAPTURE(name);
            CAPTURE(online);
            Model m = d.model;
            rotate_model(m, make_rotation(m.config, kind, 0, online));
            const EvalResult r = evaluate(m, d.docs);
            MESSAGE("rot=" << name << (online ? ",rot-online=1" : "") << ": mean NLL " << r.mean_nll() << " (unrotated "
                           << ref << ", difference " << r.mean_nll() - ref << ")");
            CHECK(r.predicted_tokens == 84382);
            CHECK(std::abs(r.mean_nll() - ref) <= 1e-4);
            CHECK(m.layers[0].wq != d.model.layers[0].wq);
        }
    // Through the recipe engine: the rotation composes with quantization (int8 RTN on a rotated
    // model stays within 0.01 of fp32, its RTN baseline is rotated too).
    const RecipeSpec r = parse_recipe("w=int8-asym:g32,rot=random:3,rot-online=1");
    CHECK(r.rtn_baseline().text() == r.text());
    QuantReport rep;
    const Model q = quantize_model(d.model, r, nullptr, true, &rep);
    CHECK_FALSE(q.config.shared_classifier);
    CHECK(q.w2_input_rotation.rows() == 172);
    // 8 bits per weight, 32 bits (fp16 scale + zero) per group of 32 (per layer 1,456 groups: 2
    // per row of wq/wk/wv/wo/w1/w3, 6 per row of w2 whose 172 columns end in a group of 12),
    // plus the online 172 x 172 fp32 matrix, over the 5 x 45,312 = 226,560 weights.
    CHECK(rep.effective_bits == doctest::Approx((8.0 * 226560 + 32.0 * 5 * 1456 + 32.0 * 172 * 172) / 226560.0));
    const std::vector<std::vector<int>> sub(d.docs.begin(), d.docs.begin() + 60);  // 60 stories keep it cheap
    CHECK(std::abs(evaluate(q, sub).mean_nll() - evaluate(d.model, sub).mean_nll()) < 0.01);
}

TEST_CASE("recipe parser: canonical forms and clear errors") {
    const RecipeSpec a = parse_recipe("w=int4-asym:g128,a=none,algo=awq+gptq,calib=tinystories");
    CHECK(a.weight == "int4-asym");
    CHECK(a.group == 128);
    CHECK(a.transform == TransformKind::awq);
    CHECK(a.reconstruct == ReconstructKind::gptq);
    CHECK(a.text() == "w=int4-asym:g128,a=none,algo=awq+gptq,calib=tinystories");
    CHECK(parse_recipe(a.text()).text() == a.text());
    const RecipeSpec b = parse_recipe(" algo = rtn+l2qer8 , w=mxint4:b16, a=mxint8-b16 ");
    CHECK(b.weight == "mxint4-b16");
    CHECK(b.low_rank == LowRankKind::l2qer);
    CHECK(b.rank == 8);
    CHECK(b.needs_calibration());
    CHECK(b.rtn_baseline().text() == "w=mxint4:b16,a=mxint8-b16,algo=rtn,calib=tinystories");
    CHECK(parse_recipe("w=mxfp4-b32").weight == "mxfp4-e2m1-b32");
    CHECK(parse_recipe("w=int8-sym").group == 0);
    CHECK(parse_recipe("w=int3-asym:pc,algo=sq").transform == TransformKind::smooth_quant);
    CHECK(parse_recipe("algo=gptq+lorc4,seq=0").sequential == std::optional<bool>(false));
    CHECK_FALSE(parse_recipe("w=int4-asym:g32").needs_calibration());
    auto msg = [](const char* r) {
        try {
            parse_recipe(r);
        } catch (const RecipeError& e) {
            return std::string(e.what());
        }
        return std::string("(accepted)");
    };
    CHECK(msg("w=int7-asym").find("unsupported weight format 'int7-asym'; supported: int2-sym") != std::string::npos);
    CHECK(msg("w=int4-asym:g0").find("granularity 'g0'") != std::string::npos);
    CHECK(msg("w=int4-asym:rows").find("pc, per-channel or gN") != std::string::npos);
    CHECK(msg("w=mxint4:pc").find("MX format takes its block") != std::string::npos);
    CHECK(msg("a=int2").find("unsupported activation format 'int2'; supported: none, int8, int4") != std::string::npos);
    CHECK(parse_recipe("a=int4").act == "int4");
    CHECK(msg("algo=gptq+awq").find("must come first") != std::string::npos);
    CHECK(msg("algo=gptq+rtn").find("two reconstruction steps") != std::string::npos);
    CHECK(msg("algo=rtn+lqer").find("needs a rank") != std::string::npos);
    CHECK(msg("algo=rtn+lqer8+gptq").find("nothing may follow") != std::string::npos);
    CHECK(msg("algo=foo").find("unknown algorithm step 'foo'") != std::string::npos);
    CHECK(msg("bits=4").find("unknown key 'bits'") != std::string::npos);
    CHECK(msg("w=int4-asym,w=int3-asym").find("given twice") != std::string::npos);
    CHECK(msg("w=int4-asym,,a=none").find("empty item") != std::string::npos);
    CHECK(msg("int4").find("not key=value") != std::string::npos);
    CHECK(msg("").find("empty recipe") != std::string::npos);
    CHECK(msg("seq=2").find("seq must be 1") != std::string::npos);
    const RecipeSpec rot = parse_recipe("w=int4-asym:g32,algo=gptq,rot=random:42,rot-online=1");
    CHECK(rot.rot == RotationKind::random);
    CHECK(rot.rot_seed == 42);
    CHECK(rot.rot_online);
    CHECK(rot.text() == "w=int4-asym:g32,a=none,algo=gptq,calib=tinystories,rot=random:42,rot-online=1");
    CHECK(parse_recipe(rot.text()).text() == rot.text());
    CHECK(parse_recipe("rot=hadamard").text() == "w=int4-asym:g32,a=none,algo=rtn,calib=tinystories,rot=hadamard");
    CHECK(parse_recipe("rot=hadamard:0").text() == parse_recipe("rot=hadamard").text());
    CHECK(parse_recipe("rot=none").rot == RotationKind::none);
    CHECK_FALSE(parse_recipe("rot=hadamard").needs_calibration());
    CHECK(msg("rot=givens").find("rot must be none, hadamard or random") != std::string::npos);
    CHECK(msg("rot=random:x").find("rot seed") != std::string::npos);
    CHECK(msg("rot=none:3").find("rot seed") != std::string::npos);
    CHECK(msg("rot-online=2").find("rot-online must be 0 or 1") != std::string::npos);
    CHECK_THROWS_AS(make_activation_quantizer("bf16"), RecipeError);
}

TEST_CASE("synthetic model: every algorithm chain runs, sequential and not, and RTN matches fake_quantize") {
    const Model m = random_model(false, 21);
    CalibData calib;
    calib.name = "synthetic";
    std::mt19937 rng(3);
    for (int s = 0; s < 6; ++s) {
        std::vector<int> q{1};
        for (int t = 0; t < 15; ++t) q.push_back(2 + static_cast<int>(rng() % 30));
        calib.tokens += q.size();
        calib.seqs.push_back(q);
    }
    const std::vector<int> toks{1, 4, 8, 15, 16, 23, 42 % 32};
    for (const char* r : {"w=int4-asym:g8,algo=gptq", "w=int3-sym:pc,algo=awq", "w=int4-asym:g8,a=int8,algo=sq+gptq",
                          "w=mxint4:b16,a=mxint8-b16,algo=awq+gptq+l2qer2", "w=int3-asym:g8,algo=gptq+lorc2",
                          "w=fp8-e4m3,a=fp8-e4m3,algo=rtn+lqer2", "w=mxfp4:b32,a=mxint8-b32,algo=sq"}) {
        CAPTURE(r);
        for (bool seq : {true, false}) {
            QuantReport rep;
            const Model q = quantize_model(m, parse_recipe(r), &calib, seq, &rep);
            CHECK(rep.weights == 2u * (16 * 16 * 2 + 8 * 16 * 2 + 24 * 16 * 2 + 16 * 24));
            CHECK(rep.effective_bits > 3.0);
            CHECK(forward(q, toks).allFinite());
        }
    }
    QuantReport rep;
    const Model q = quantize_model(m, parse_recipe("w=int4-asym:g8"), nullptr, true, &rep);
    CHECK(rep.effective_bits == doctest::Approx(4.0 + 32.0 / 8.0));
    CHECK(q.layers[1].w2 == ptq::fake_quantize<ptq::IntFormat<4, false>>(m.layers[1].w2, {}, ptq::PerGroup<8>{}));
    CHECK_THROWS_AS(quantize_model(m, parse_recipe("w=int4-asym:g8,algo=gptq"), nullptr, true, nullptr),
                    RecipeError);  // needs calibration data
    // Refinement and error-aware calibration (sequential only): they change the weights.
    const Model plain = quantize_model(m, parse_recipe("w=int3-asym:g8,algo=awq+gptq"), &calib, true, nullptr);
    for (const char* r : {"w=int3-asym:g8,algo=awq+gptq,refine=2", "w=int3-asym:g8,algo=awq+gptq,gptaq=1"}) {
        CAPTURE(r);
        const Model x = quantize_model(m, parse_recipe(r), &calib, true, nullptr);
        CHECK(forward(x, toks).allFinite());
        CHECK(x.layers[1].w2 != plain.layers[1].w2);
        // gptaq: layer 0's q/k/v read the embedding, the same in the fp32 and quantized models.
        if (std::string(r).find("gptaq") != std::string::npos) CHECK(x.layers[0].wq == plain.layers[0].wq);
        else CHECK(x.layers[0].wq != plain.layers[0].wq);
    }
    CHECK_THROWS_AS(quantize_model(m, parse_recipe("w=int3-asym:g8,algo=gptq,gptaq=1"), &calib, false, nullptr),
                    RecipeError);  // non-sequential: nothing to correct
}

TEST_CASE("real data: calibration sequences (stories and windows of one long text)" * doctest::skip(!have_data())) {
    const RealData& d = real();
    const int seq = d.model.config.seq_len;
    const auto st = calibration_sequences(d.tok, read_text_file(calib_path()), seq, 5000);
    std::size_t n = 0;
    for (const auto& s : st) {
        CHECK(s.front() == Tokenizer::kBos);
        CHECK(static_cast<int>(s.size()) <= seq);
        n += s.size();
    }
    CHECK(n == 5000);
    if (fs::is_regular_file(wikitext_path())) {
        const auto wk = calibration_sequences(d.tok, read_text_file(wikitext_path()), seq, 3000);
        n = 0;
        for (const auto& s : wk) {
            CHECK(s.front() == Tokenizer::kBos);
            CHECK(static_cast<int>(s.size()) <= seq);
            n += s.size();
        }
        CHECK(n == 3000);
        CHECK(wk.front().size() == static_cast<std::size_t>(seq));
    }
}

TEST_CASE("real model: the recipe engine's RTN is the reference RTN; GPTQ and AWQ beat RTN" *
          doctest::skip(!have_data())) {
    const RealData& d = real();
    // RTN through the recipe engine gives exactly the weights of the reference check above.
    {
        const Model q = quantize_model(d.model, parse_recipe("w=int4-asym:g32,algo=rtn"), nullptr, true, nullptr);
        for (int l = 0; l < d.model.config.n_layers; ++l)
            for (auto name : kLinearNames)
                CHECK(q.layers[static_cast<std::size_t>(l)].linear(name) ==
                      ptq::fake_quantize<ptq::IntFormat<4, false>>(
                          d.model.layers[static_cast<std::size_t>(l)].linear(name), {}, ptq::PerGroup<32>{}));
    }
    CalibData calib = load_calibration("tinystories", data_dir(), d.tok, d.model.config.seq_len, 8192);
    auto run = [&](const char* recipe, bool sequential, std::size_t docs) {
        QuantReport rep;
        const auto t0 = std::chrono::steady_clock::now();
        const Model q = quantize_model(d.model, parse_recipe(recipe), &calib, sequential, &rep);
        const std::vector<std::vector<int>> sub(d.docs.begin(), d.docs.begin() + static_cast<std::ptrdiff_t>(docs));
        const EvalResult r = evaluate(q, sub);
        MESSAGE(std::string(recipe) << (sequential ? " (sequential)" : " (non-sequential)") << ": mean NLL "
                                    << r.mean_nll() << " on " << docs << " stories, " << rep.effective_bits
                                    << " bits/weight, quantized in " << rep.seconds << " s, total "
                                    << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
                                    << " s");
        return r.mean_nll();
    };
    const std::size_t all = d.docs.size();
    // GPTQ int4-asym g32 (sequential, 8k calibration tokens) beats RTN's 1.3562 (docs/DESIGN.md §16).
    CHECK(run("w=int4-asym:g32,algo=gptq", true, all) < 1.3562 - 0.01);
    // AWQ at 3 bits g32 is no worse than RTN at 3 bits g32.
    const double rtn3 = run("w=int3-asym:g32,algo=rtn", true, all);
    CHECK(run("w=int3-asym:g32,algo=awq", true, all) <= rtn3);
    // Sequential and non-sequential protocols both run and both beat RTN (on the first 80 stories).
    const double rtn3_sub = run("w=int3-asym:g32,algo=rtn", true, 80);
    CHECK(run("w=int3-asym:g32,algo=gptq", true, 80) < rtn3_sub);
    CHECK(run("w=int3-asym:g32,algo=gptq", false, 80) < rtn3_sub);
}
