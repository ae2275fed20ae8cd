#pragma once
// Test helper: a SentencePiece tokenizer.model (serialized ModelProto) built from a llama2.c
// tokenizer.bin, written by hand in the protobuf wire format, with the settings of Llama's
// tokenizer.model: BPE, byte fallback, identity normalization, dummy prefix, no whitespace
// collapsing. Only for tests: the file is written to a temporary directory at test time.
//
// tokenizer.bin: i32 max_token_length, then per token f32 score, i32 length, bytes (llama2.c's
// export replaced SentencePiece's U+2581 by ' '; this helper puts it back). Token 0 is <unk>,
// 1 and 2 are BOS / EOS, 3 .. 258 the bytes <0x00> .. <0xFF>.
//
// Fields (sentencepiece_model.proto): ModelProto { repeated SentencePiece pieces = 1;
// TrainerSpec trainer_spec = 2; NormalizerSpec normalizer_spec = 3; }, SentencePiece { string
// piece = 1; float score = 2; Type type = 3 (NORMAL 1, UNKNOWN 2, CONTROL 3, BYTE 6) },
// TrainerSpec { model_type = 3 (BPE 2); vocab_size = 4; byte_fallback = 35; unk_id = 40;
// bos_id = 41; eos_id = 42 }, NormalizerSpec { name = 1; add_dummy_prefix = 3;
// remove_extra_whitespaces = 4; escape_whitespaces = 5 }.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace ptq_tool_test {

/// The pieces and scores of a llama2.c tokenizer.bin.
struct Llama2cVocab {
    std::vector<std::string> pieces;
    std::vector<float> scores;
};

inline Llama2cVocab read_llama2c_vocab(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path.string());
    const std::string b{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (b.size() < 4) throw std::runtime_error(path.string() + ": shorter than its header");
    Llama2cVocab v;
    std::size_t pos = 4;  // max_token_length is not needed
    while (pos < b.size()) {
        if (b.size() - pos < 8) throw std::runtime_error(path.string() + ": truncated");
        float score;
        std::int32_t len;
        std::memcpy(&score, b.data() + pos, 4);
        std::memcpy(&len, b.data() + pos + 4, 4);
        pos += 8;
        if (len < 0 || b.size() - pos < static_cast<std::size_t>(len))
            throw std::runtime_error(path.string() + ": bad length");
        v.pieces.emplace_back(b.data() + pos, static_cast<std::size_t>(len));
        v.scores.push_back(score);
        pos += static_cast<std::size_t>(len);
    }
    return v;
}

/// Protobuf wire-format writer (varint, fixed32, length-delimited).
struct Proto {
    std::string b;
    void varint(std::uint64_t v) {
        while (v >= 0x80) {
            b += static_cast<char>((v & 0x7F) | 0x80);
            v >>= 7;
        }
        b += static_cast<char>(v);
    }
    void key(int field, int wire) { varint(static_cast<std::uint64_t>(field) << 3 | static_cast<std::uint64_t>(wire)); }
    void int_field(int field, std::uint64_t v) {
        key(field, 0);
        varint(v);
    }
    void float_field(int field, float f) {
        key(field, 5);
        char c[4];
        std::memcpy(c, &f, 4);  // little-endian host
        b.append(c, 4);
    }
    void bytes_field(int field, const std::string& s) {
        key(field, 2);
        varint(s.size());
        b += s;
    }
};

/// The serialized ModelProto of `v` (see the file comment).
inline std::string spm_model_from_llama2c(const Llama2cVocab& v) {
    enum Type { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, BYTE = 6 };
    Proto model;
    for (std::size_t i = 0; i < v.pieces.size(); ++i) {
        std::string piece = v.pieces[i];
        int type = NORMAL;
        if (i == 0) piece = "<unk>", type = UNKNOWN;
        else if (i == 1) piece = "<s>", type = CONTROL;
        else if (i == 2) piece = "</s>", type = CONTROL;
        else if (i < 3 + 256) type = BYTE;  // "<0xHH>", as SentencePiece names them
        else {
            std::string s;
            for (char c : piece) s += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
            piece = s;
        }
        Proto p;
        p.bytes_field(1, piece);
        p.float_field(2, v.scores[i]);
        p.int_field(3, static_cast<std::uint64_t>(type));
        model.bytes_field(1, p.b);
    }
    Proto trainer;
    trainer.int_field(3, 2);  // BPE
    trainer.int_field(4, v.pieces.size());
    trainer.int_field(35, 1);  // byte_fallback
    trainer.int_field(40, 0);
    trainer.int_field(41, 1);
    trainer.int_field(42, 2);
    model.bytes_field(2, trainer.b);
    Proto norm;
    norm.bytes_field(1, "identity");
    norm.int_field(3, 1);  // add_dummy_prefix
    norm.int_field(4, 0);  // remove_extra_whitespaces
    norm.int_field(5, 1);  // escape_whitespaces
    model.bytes_field(3, norm.b);
    return model.b;
}

}  // namespace ptq_tool_test
