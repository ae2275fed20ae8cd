// ptq::tool::SentencePieceTokenizer against a real oracle: a tokenizer.model built at test time
// from the shared model's llama2.c tokenizer (tok512.bin, itself exported from a SentencePiece
// BPE model), loaded by libsentencepiece, must encode the evaluation text like the llama2.c
// tokenizer of the harness. Plus decode round trips and the errors of bad model files.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <unistd.h>

#include <doctest/doctest.h>

#include <ptq/error.hpp>

#include "evaluation.hpp"
#include "llama2c_tokenizer.hpp"
#include "sp_tokenizer.hpp"
#include "spm_model.hpp"

namespace fs = std::filesystem;
using ptq::tool::SentencePieceTokenizer;

namespace {

fs::path data_dir() {
    if (const char* env = std::getenv("PTQ_DATA_DIR"); env && *env) return env;
    return PTQ_DATA_DIR;
}
fs::path tok512_path() { return data_dir() / "stories260K" / "tok512.bin"; }
fs::path valid_path() { return data_dir() / "tinystories" / "valid.txt"; }

bool have_data() {
    static const bool ok = [] {
        std::error_code ec;
        const bool found = fs::is_regular_file(tok512_path(), ec) && fs::is_regular_file(valid_path(), ec);
        if (!found)
            std::cerr << "SKIPPED: shared data not found at '" << data_dir().string()
                      << "' (set PTQ_DATA_DIR); the tokenizer oracle test is reported as skipped.\n";
        return found;
    }();
    return ok;
}

/// A fresh directory under the system temporary directory, removed at the end.
struct TempDir {
    fs::path path;
    explicit TempDir(const std::string& name)
        : path(fs::temp_directory_path() / ("ptq_tool_" + name + "_" + std::to_string(::getpid()))) {
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

void write_file(const fs::path& p, const std::string& bytes) {
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("sp tokenizer: a tokenizer.model made from tok512.bin encodes valid.txt like llama2.c" *
          doctest::skip(!have_data())) {
    TempDir dir("spm");
    const auto vocab = ptq_tool_test::read_llama2c_vocab(tok512_path());
    REQUIRE(vocab.pieces.size() == 512);
    const fs::path model = dir.path / "tokenizer.model";
    write_file(model, ptq_tool_test::spm_model_from_llama2c(vocab));

    const SentencePieceTokenizer sp(model);
    CHECK(sp.vocab_size() == 512);
    CHECK(sp.bos_id() == 1);
    CHECK(sp.eos_id() == 2);
    const auto l2c = ptq::llama::Llama2cTokenizer::load(tok512_path(), 512);

    const auto stories = ptq::llama::split_stories(read_text(valid_path()));
    REQUIRE(stories.size() > 200);
    std::size_t tokens = 0, differing_stories = 0, differing_positions = 0, length_mismatch = 0, roundtrip_fail = 0;
    for (const auto& s : stories) {
        const std::vector<int> a = sp.encode(s, /*bos=*/true);
        const std::vector<int> b = l2c.encode(s, /*bos=*/true);
        tokens += b.size();
        if (a != b) {
            ++differing_stories;
            if (a.size() != b.size()) ++length_mismatch;
            for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) differing_positions += a[i] != b[i];
            differing_positions += std::max(a.size(), b.size()) - std::min(a.size(), b.size());
        }
        // SentencePiece drops the dummy-prefix space that llama2.c's decode keeps.
        roundtrip_fail += sp.decode(a) != s;
    }
    MESSAGE("tokenizer agreement on valid.txt: " << stories.size() << " stories, " << tokens
                                                 << " llama2.c tokens; stories that differ: " << differing_stories
                                                 << " (length differs in " << length_mismatch
                                                 << "), differing token positions: " << differing_positions);
    CHECK(tokens > 40000);
    CHECK(differing_stories == 0);
    CHECK(differing_positions == 0);
    CHECK(roundtrip_fail == 0);

    // Hand-checked pieces: BOS, then "▁" merged into the first word; a byte-fallback character.
    const auto hello = sp.encode("Once upon a time", true);
    CHECK(hello == l2c.encode("Once upon a time", true));
    CHECK(hello.front() == 1);
    CHECK(sp.encode("", true) == std::vector<int>{1});
    CHECK(sp.encode("", false).empty());
    const auto snow = sp.encode("\xE2\x9D\x84", false);  // U+2744, not a piece: "▁" + its 3 bytes
    CHECK(snow == l2c.encode("\xE2\x9D\x84", false));
    CHECK(sp.decode(snow) == "\xE2\x9D\x84");
}

TEST_CASE("sp tokenizer: bad model files and ids are clear errors") {
    TempDir dir("spm_bad");
    auto expect_file_error = [](const fs::path& p, const std::string& fragment) {
        try {
            SentencePieceTokenizer t(p);
            FAIL("no ptq::file_error for " << p);
        } catch (const ptq::file_error& e) {
            INFO(e.what());
            CHECK(e.file() == p.string());
            CHECK(std::string(e.what()).find(fragment) != std::string::npos);
        }
    };
    expect_file_error(dir.path / "missing.model", "not found");
    expect_file_error(dir.path, "not found");  // a directory
    write_file(dir.path / "garbage.model", "this is not a protobuf \xff\xff\xff\xff");
    expect_file_error(dir.path / "garbage.model", "not a SentencePiece model");
    write_file(dir.path / "empty.model", "");
    expect_file_error(dir.path / "empty.model", "not a SentencePiece model");

    // A small valid model (no data needed): <unk> <s> </s>, the 256 bytes, "▁a".
    ptq_tool_test::Llama2cVocab v;
    v.pieces = {"<unk>", "\n<s>\n", "\n</s>\n"};
    for (int b = 0; b < 256; ++b) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        v.pieces.emplace_back(buf);
    }
    v.pieces.emplace_back(" a");
    v.scores.assign(v.pieces.size(), 0.0f);
    const std::string bytes = ptq_tool_test::spm_model_from_llama2c(v);
    write_file(dir.path / "small.model", bytes);
    const SentencePieceTokenizer t(dir.path / "small.model");
    CHECK(t.vocab_size() == 260);
    CHECK(t.encode("a", true) == std::vector<int>{1, 259});
    CHECK(t.encode("b", false) == std::vector<int>{3 + 0xE2, 3 + 0x96, 3 + 0x81, 3 + 'b'});  // "▁" has no piece
    CHECK(t.decode(std::vector<int>{1, 259, 259, 2}) == "a a");
    CHECK_THROWS_AS((void)t.decode(std::vector<int>{1, 260}), ptq::invalid_argument);
    CHECK_THROWS_AS((void)t.decode(std::vector<int>{-1}), ptq::invalid_argument);
    // Truncated model bytes.
    write_file(dir.path / "cut.model", bytes.substr(0, bytes.size() / 2));
    expect_file_error(dir.path / "cut.model", "not a SentencePiece model");
}
