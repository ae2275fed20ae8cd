// llama2.c tokenizer.bin: loader and its BPE encoder / decoder (run.c's algorithm, with the
// dummy-prefix space and the byte fallback <0xHH> = token 3 + byte).
#pragma once

#include "model.hpp"
#include "tokenizer.hpp"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ptq::llama {

// ---------------------------------------------------------------------------------------------
// Tokenizer (llama2.c tokenizer.bin + its BPE)
// ---------------------------------------------------------------------------------------------

class Llama2cTokenizer : public Tokenizer {
public:
    static constexpr int kBos = 1;
    static constexpr int kEos = 2;
    static constexpr int kByteTokenOffset = 3;  ///< byte b (no token of its own) -> token 3 + b

    /// Loads tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length,
    /// `length` bytes. With vocab_size > 0 exactly that many tokens must be present and nothing
    /// may follow them (a tokenizer of another model is rejected); with vocab_size <= 0 tokens
    /// are read until the end of the file. Every token length must be in [0, max_token_length]
    /// (llama2.c sizes its merge buffer from max_token_length).
    static Llama2cTokenizer load(const std::filesystem::path& path, int vocab_size = 0) {
        const std::uintmax_t size = detail::file_size_or_throw(path, "tokenizer");
        auto bad = [&](const std::string& what) {
            return FormatError("ptq::llama: tokenizer " + detail::quote(path) + ": " + what);
        };
        if (size < 4) throw bad("file is " + std::to_string(size) + " bytes, shorter than the 4-byte header");
        if (size > (std::uintmax_t{1} << 31))
            throw bad("file is implausibly large (" + std::to_string(size) + " bytes)");
        std::ifstream in(path, std::ios::binary);
        if (!in) throw bad("cannot open");
        std::vector<char> buf(static_cast<std::size_t>(size));
        in.read(buf.data(), static_cast<std::streamsize>(size));
        if (!in || static_cast<std::uintmax_t>(in.gcount()) != size) throw bad("read error");

        std::size_t pos = 0;
        auto get_i32 = [&](const char* what, std::size_t index) {
            if (buf.size() - pos < 4)
                throw bad("unexpected end of file reading the " + std::string(what) + " of token " +
                          std::to_string(index));
            std::int32_t v;
            std::memcpy(&v, buf.data() + pos, 4);
            pos += 4;
            return v;
        };
        Llama2cTokenizer t;
        std::int32_t mtl;
        std::memcpy(&mtl, buf.data(), 4);
        pos = 4;
        if (mtl <= 0) throw bad("max_token_length = " + std::to_string(mtl) + " must be positive");
        t.max_token_length_ = mtl;
        const std::size_t want = vocab_size > 0 ? static_cast<std::size_t>(vocab_size) : 0;
        for (std::size_t i = 0; vocab_size > 0 ? i < want : pos < buf.size(); ++i) {
            if (vocab_size > 0 && pos == buf.size())
                throw bad("has " + std::to_string(i) + " tokens, expected " + std::to_string(vocab_size) +
                          " (truncated file)");
            const std::int32_t score_bits = get_i32("score", i);
            float score;
            std::memcpy(&score, &score_bits, 4);
            const std::int32_t len = get_i32("length", i);
            if (len < 0 || len > mtl)
                throw bad("token " + std::to_string(i) + " has length " + std::to_string(len) +
                          ", outside [0, max_token_length = " + std::to_string(mtl) + "]");
            if (buf.size() - pos < static_cast<std::size_t>(len))
                throw bad("unexpected end of file in the bytes of token " + std::to_string(i));
            t.pieces_.emplace_back(buf.data() + pos, static_cast<std::size_t>(len));
            t.scores_.push_back(score);
            pos += static_cast<std::size_t>(len);
        }
        if (pos != buf.size())
            throw bad(std::to_string(buf.size() - pos) + " trailing bytes after " + std::to_string(vocab_size) +
                      " tokens (tokenizer of a different vocabulary?)");
        if (t.pieces_.size() < kByteTokenOffset + 256)
            throw bad("has " + std::to_string(t.pieces_.size()) + " tokens; the byte fallback needs at least " +
                      std::to_string(kByteTokenOffset + 256));
        t.build_index();
        return t;
    }

    /// Builds a tokenizer from pieces and scores (tests / synthetic vocabularies).
    static Llama2cTokenizer from_pieces(std::vector<std::string> pieces, std::vector<float> scores) {
        if (pieces.size() != scores.size())
            throw std::invalid_argument("ptq::llama::Tokenizer: pieces/scores size mismatch");
        if (pieces.size() < kByteTokenOffset + 256)
            throw std::invalid_argument("ptq::llama::Tokenizer: need at least 259 tokens for the byte fallback");
        Llama2cTokenizer t;
        t.pieces_ = std::move(pieces);
        t.scores_ = std::move(scores);
        for (const auto& p : t.pieces_)
            t.max_token_length_ = std::max<int>(t.max_token_length_, static_cast<int>(p.size()));
        t.build_index();
        return t;
    }

    int max_token_length() const { return max_token_length_; }
    const std::string& piece(int id) const { return pieces_.at(static_cast<std::size_t>(id)); }
    float score(int id) const { return scores_.at(static_cast<std::size_t>(id)); }

    /// Token id of an exact piece, or -1 (first occurrence wins, like llama2.c's linear lookup).
    int lookup(std::string_view s) const {
        auto it = index_.find(std::string(s));
        return it == index_.end() ? -1 : it->second;
    }

    /// llama2.c's encode: [BOS] (if bos), then, for non-empty text, the " " token (the
    /// SentencePiece "dummy prefix"), then one token per UTF-8 character (a lead byte plus at
    /// most 3 continuation bytes) if the character is a piece, else one byte token (3 + byte) per
    /// byte; then repeatedly merge the adjacent pair whose concatenation is a piece with the
    /// highest score (leftmost pair on ties; scores must exceed -1e10 as in run.c), until no
    /// pair merges; then [EOS] (if eos).
    ///
    /// Implementation: a priority queue of candidate merges over a linked list, ordered by
    /// (score desc, original position asc). Positions keep their left-to-right order, so this
    /// picks exactly the pair run.c's O(n^2) rescan picks, in O(n log n).
    /// The interface's encode (no EOS) and the dummy-prefix text with BOS.
    std::vector<int> encode(std::string_view text, bool bos) const override { return encode(text, bos, false); }
    std::vector<int> encode(std::string_view text) const { return encode(text, true, false); }
    int vocab_size() const override { return static_cast<int>(pieces_.size()); }

    std::vector<int> encode(std::string_view text, bool bos, bool eos) const {
        std::vector<int> out;
        if (bos) out.push_back(kBos);
        std::vector<int> tok;
        tok.reserve(text.size() + 1);
        if (!text.empty()) {
            const int sp = lookup(" ");
            tok.push_back(sp >= 0 ? sp : kByteTokenOffset + ' ');
        }
        for (std::size_t i = 0; i < text.size();) {
            std::size_t j = i + 1;
            // Continuation bytes 10xxxxxx extend the character, up to 4 bytes in total.
            while (j < text.size() && j - i < 4 && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80) ++j;
            const int id = lookup(text.substr(i, j - i));
            if (id >= 0) {
                tok.push_back(id);
            } else {
                for (std::size_t k = i; k < j; ++k)
                    tok.push_back(kByteTokenOffset + static_cast<unsigned char>(text[k]));
            }
            i = j;
        }
        merge(tok);
        out.insert(out.end(), tok.begin(), tok.end());
        if (eos) out.push_back(kEos);
        return out;
    }

    /// The bytes of one token: byte tokens "<0xHH>" become the byte, others their piece. No
    /// leading-space stripping (see decode_piece for llama2.c's printing convention).
    std::string token_bytes(int id) const {
        const std::string& p = piece(id);
        if (p.size() == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>') {
            auto hex = [](char ch) -> int {
                if (ch >= '0' && ch <= '9') return ch - '0';
                if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
                if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
                return -1;
            };
            const int hi = hex(p[3]), lo = hex(p[4]);
            if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
        }
        return p;
    }

    /// llama2.c's decode for printing: like token_bytes, but after BOS a leading space is dropped.
    std::string decode_piece(int prev, int id) const {
        std::string s = token_bytes(id);
        if (prev == kBos && !s.empty() && s[0] == ' ') s.erase(0, 1);
        return s;
    }

    /// Concatenated bytes of the tokens, BOS/EOS skipped, leading space kept: for text t,
    /// decode(encode(t)) == " " + t.
    std::string decode(std::span<const int> tokens) const {
        std::string s;
        for (int id : tokens)
            if (id != kBos && id != kEos) s += token_bytes(id);
        return s;
    }

private:
    void build_index() {
        index_.clear();
        index_.reserve(pieces_.size() * 2);
        for (std::size_t i = 0; i < pieces_.size(); ++i) index_.emplace(pieces_[i], static_cast<int>(i));
    }

    void merge(std::vector<int>& tok) const {
        const std::size_t n = tok.size();
        if (n < 2) return;
        std::vector<std::ptrdiff_t> next(n), prev(n);
        std::vector<std::uint32_t> version(n, 0);  // bumped whenever a node's token changes or dies
        std::vector<bool> alive(n, true);
        for (std::size_t i = 0; i < n; ++i) {
            next[i] = static_cast<std::ptrdiff_t>(i) + 1 < static_cast<std::ptrdiff_t>(n)
                          ? static_cast<std::ptrdiff_t>(i) + 1
                          : -1;
            prev[i] = static_cast<std::ptrdiff_t>(i) - 1;
        }
        struct Cand {
            float score;
            std::ptrdiff_t left, right;
            std::uint32_t vl, vr;
            int id;
        };
        auto worse = [](const Cand& a, const Cand& b) {  // "a has lower priority than b"
            if (a.score != b.score) return a.score < b.score;
            return a.left > b.left;
        };
        std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
        std::string buf;
        auto consider = [&](std::ptrdiff_t l) {
            if (l < 0) return;
            const std::ptrdiff_t r = next[static_cast<std::size_t>(l)];
            if (r < 0) return;
            buf = pieces_[static_cast<std::size_t>(tok[static_cast<std::size_t>(l)])];
            buf += pieces_[static_cast<std::size_t>(tok[static_cast<std::size_t>(r)])];
            const int id = lookup(buf);
            if (id < 0) return;
            const float s = scores_[static_cast<std::size_t>(id)];
            if (!(s > -1e10f)) return;  // run.c starts from best_score = -1e10 with a strict '>'
            heap.push(Cand{s, l, r, version[static_cast<std::size_t>(l)], version[static_cast<std::size_t>(r)], id});
        };
        for (std::size_t i = 0; i + 1 < n; ++i) consider(static_cast<std::ptrdiff_t>(i));
        while (!heap.empty()) {
            const Cand c = heap.top();
            heap.pop();
            const auto l = static_cast<std::size_t>(c.left), r = static_cast<std::size_t>(c.right);
            if (!alive[l] || !alive[r] || next[l] != c.right || version[l] != c.vl || version[r] != c.vr) continue;
            tok[l] = c.id;
            ++version[l];
            alive[r] = false;
            ++version[r];
            next[l] = next[r];
            if (next[r] >= 0) prev[static_cast<std::size_t>(next[r])] = c.left;
            consider(prev[l]);
            consider(c.left);
        }
        std::vector<int> out;
        out.reserve(n);
        for (std::ptrdiff_t i = 0; i >= 0; i = next[static_cast<std::size_t>(i)])
            out.push_back(tok[static_cast<std::size_t>(i)]);
        tok.swap(out);
    }

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::unordered_map<std::string, int> index_;
    int max_token_length_ = 0;
};

}  // namespace ptq::llama
