// Weight-only RTN of the harness model's seven linears into a ggml block type, so that a GGUF
// file written by save_gguf holds exactly the weights ptq evaluated.
//
//   type    ptq format                    ggml block
//   q8_0    IntFormat<8, true>            Q8_0  (fp16 d, int8 q; q in [-127, 127])
//   q4_0    IntFormat<4, true>            Q4_0  (fp16 d, nibble - 8; q in [-7, 7])
//   q4_1    IntMinFormat<4>               Q4_1  (fp16 d, fp16 m, nibble)
//   mxfp4   MxFp<2, 1, 32>                MXFP4 (E8M0 byte, E2M1 nibbles)
// Groups of 32 along in_features, round half to even, scales (and Q4_1 minimums) rounded to
// fp16 *before* the codes are chosen (QuantOptions::scale_storage = f16), so the fp16 values
// ggml stores are the ones ptq used: ggml's dequantization of the file equals ptq::dequantize
// bit for bit (io/gguf_blocks.hpp). A linear whose in_features is not a multiple of 32 (w2 of
// stories260K: 172) is quantized the same way (its last group has 172 mod 32 = 12 columns) and
// stored dequantized as F32 (GgmlExportOptions::ragged_fallback): ggml blocks cannot hold it,
// and the file still holds the evaluated weights. Embedding, norms and classifier stay F32.
#pragma once

#include "gguf_model.hpp"
#include "model.hpp"

#include <ptq/algo/rtn.hpp>
#include <ptq/format/int_format.hpp>
#include <ptq/format/int_min_format.hpp>
#include <ptq/format/mx_fp.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/io/gguf_blocks.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ptq::llama {

enum class GgufQuantType { q8_0, q4_0, q4_1, mxfp4 };

/// "q8_0", "q4_0", "q4_1", "mxfp4" (case-sensitive) or nullopt.
inline std::optional<GgufQuantType> parse_gguf_quant_type(std::string_view s) {
    if (s == "q8_0") return GgufQuantType::q8_0;
    if (s == "q4_0") return GgufQuantType::q4_0;
    if (s == "q4_1") return GgufQuantType::q4_1;
    if (s == "mxfp4") return GgufQuantType::mxfp4;
    return std::nullopt;
}

/// The name parse_gguf_quant_type reads.
inline const char* gguf_quant_type_name(GgufQuantType t) {
    switch (t) {
        case GgufQuantType::q8_0: return "q8_0";
        case GgufQuantType::q4_0: return "q4_0";
        case GgufQuantType::q4_1: return "q4_1";
        case GgufQuantType::mxfp4: return "mxfp4";
    }
    return "?";
}

/// llama.cpp's llama_ftype of a model whose linears are of type t (general.file_type).
inline std::uint32_t gguf_file_type(GgufQuantType t) {
    switch (t) {
        case GgufQuantType::q8_0: return 7;    // LLAMA_FTYPE_MOSTLY_Q8_0
        case GgufQuantType::q4_0: return 2;    // LLAMA_FTYPE_MOSTLY_Q4_0
        case GgufQuantType::q4_1: return 3;    // LLAMA_FTYPE_MOSTLY_Q4_1
        case GgufQuantType::mxfp4: return 38;  // LLAMA_FTYPE_MOSTLY_MXFP4_MOE
    }
    return 0;
}

/// A model with RTN-quantized linears: `model` holds the dequantized weights (what ptq
/// evaluates), `linears` their GGUF encoding, layer-major in kLinearNames order.
struct GgufQuantizedModel {
    Model model;
    std::vector<GgufEncodedWeight> linears;
    std::uint32_t file_type = 0;

    /// save_gguf options that write `linears` (the model passed to save_gguf must be `model`).
    GgufWriteOptions write_options(std::string name) const {
        GgufWriteOptions o;
        o.name = std::move(name);
        o.file_type = file_type;
        o.encode = [this](int layer, std::string_view linear, const RowMatrix&) {
            return linears.at(static_cast<std::size_t>(layer) * 7 + static_cast<std::size_t>(linear_index(linear)));
        };
        return o;
    }
};

namespace detail {
template <class F>
GgufQuantizedModel quantize_linears_for_gguf(const Model& m) {
    QuantOptions o;
    o.scale_storage = ScaleStorage::f16;
    io::GgmlExportOptions e;
    e.ragged_fallback = io::GgmlType::F32;
    const Rtn<F, PerGroup<32>> rtn(o);
    GgufQuantizedModel out;
    out.model = m;
    out.model.for_each_linear([&](int l, std::string_view name, RowMatrix& w) {
        const QuantizedMatrix<F> q = rtn.quantize(w);
        io::GgmlTensor t = io::to_ggml(q, gguf_linear_name(l, name), e);
        w = dequantize(q);
        out.linears.push_back({t.type, std::move(t.data)});
    });
    return out;
}
}  // namespace detail

/// RTN of the seven linears of every layer of `m` into `type` (see the file comment).
inline GgufQuantizedModel quantize_for_gguf(const Model& m, GgufQuantType type) {
    GgufQuantizedModel q;
    switch (type) {
        case GgufQuantType::q8_0: q = detail::quantize_linears_for_gguf<IntFormat<8, true>>(m); break;
        case GgufQuantType::q4_0: q = detail::quantize_linears_for_gguf<IntFormat<4, true>>(m); break;
        case GgufQuantType::q4_1: q = detail::quantize_linears_for_gguf<IntMinFormat<4>>(m); break;
        case GgufQuantType::mxfp4: q = detail::quantize_linears_for_gguf<MxFp<2, 1, 32>>(m); break;
    }
    q.file_type = gguf_file_type(type);
    return q;
}

}  // namespace ptq::llama
