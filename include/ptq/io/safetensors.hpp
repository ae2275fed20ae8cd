#pragma once
// safetensors files (huggingface/safetensors): a validating, zero-copy reader over a memory
// mapping, a streaming writer (tensors declared up front, their bytes written in any order) and
// the all-or-nothing write_safetensors on top of it.
//
// Layout: u64 little-endian N, N bytes of UTF-8 JSON (the header), then the data buffer.
// Header: {"__metadata__": {str: str}, "<name>": {"dtype": "F16", "shape": [..],
// "data_offsets": [begin, end]}, ...}; offsets are relative to the data buffer, end exclusive.
//
// The reader accepts exactly what the reference reader (safetensors/src/tensor.rs,
// SafeTensors::read_metadata and Metadata::validate) accepts, and rejects with a
// ptq::file_error naming the file and the field:
//   * a file shorter than 8 bytes; N > 100,000,000; 8 + N beyond the file end;
//   * a header that is not UTF-8 JSON, not an object, or has entries of the wrong types
//     ("__metadata__" must map strings to strings or be null; a tensor needs "dtype" (a known
//     name), "shape" (array of unsigned integers) and "data_offsets" (two unsigned integers);
//     unknown fields of a tensor are ignored; the positional form [dtype, shape, offsets] that
//     serde also accepts is accepted);
//   * tensors that, sorted by (begin, end), do not start at 0 and follow each other exactly;
//   * an element count or bit count that overflows 64 bits, a bit count that is not a whole
//     number of bytes, or end - begin != count * bits / 8;
//   * a data buffer that does not end exactly at the end of the file.
// Stricter than the reference, because another reader could resolve them differently: a UTF-8
// byte-order mark before the JSON (nlohmann accepts it, serde_json does not), a key repeated in
// the same object (serde keeps one of the two), and nesting deeper than the format has.
// Empty tensors (a 0 in the shape) and rank-0 tensors (shape [], one element) are legal.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <ptq/error.hpp>
#include <ptq/io/atomic_file.hpp>
#include <ptq/io/convert.hpp>
#include <ptq/io/dtype.hpp>
#include <ptq/io/mapped_file.hpp>
#include <ptq/io/tensor_file_writer.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq::io {

/// Largest header the reference reader accepts (bytes of JSON, padding included).
inline constexpr std::uint64_t safetensors_max_header_size = 100'000'000;

/// One entry of a safetensors header.
struct SafetensorsTensorInfo {
    std::string name;
    DType dtype = DType::F32;
    std::vector<std::uint64_t> shape;  ///< row-major (C order), outermost first
    std::uint64_t begin = 0;           ///< data_offsets[0], relative to the data buffer
    std::uint64_t end = 0;             ///< data_offsets[1] (one past the last byte)
    /// Number of elements: the product of the shape (1 for rank 0). Validated not to overflow.
    std::uint64_t numel() const noexcept {
        std::uint64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
};

/// The validated header of a safetensors file.
struct SafetensorsHeader {
    std::uint64_t header_size = 0;                ///< N: bytes of JSON, padding included
    std::map<std::string, std::string> metadata;  ///< "__metadata__" (empty if absent or null)
    std::vector<SafetensorsTensorInfo> tensors;   ///< sorted by data offset (then name)
    /// Offset of the data buffer in the file.
    std::uint64_t data_offset() const noexcept { return 8 + header_size; }
    /// The tensor called `name`, or nullptr.
    const SafetensorsTensorInfo* find(std::string_view name) const noexcept {
        for (const auto& t : tensors)
            if (t.name == name) return &t;
        return nullptr;
    }
};

namespace detail {

/// Reads a JSON number as usize the way serde_json does for a usize field: any integer in
/// [0, 2^64) ("-0" included); floats, negatives and larger numbers are refused.
inline std::optional<std::uint64_t> json_usize(const nlohmann::json& j) {
    if (j.is_number_unsigned()) return j.get<std::uint64_t>();
    if (j.is_number_integer() && j.get<std::int64_t>() == 0) return 0;
    return std::nullopt;
}

inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& r) noexcept {
    return !__builtin_mul_overflow(a, b, &r);
}

inline SafetensorsTensorInfo parse_safetensors_entry(const std::string& file, const std::string& name,
                                                     const nlohmann::json& v) {
    const std::string where = "tensor '" + name + "'";
    auto fail = [&](const std::string& field, const std::string& what) -> void {
        throw file_error(file, where + ": " + field, what);
    };
    const nlohmann::json *dt = nullptr, *sh = nullptr, *off = nullptr;
    if (v.is_object()) {
        auto get = [&](const char* k) -> const nlohmann::json* {
            auto it = v.find(k);
            if (it == v.end()) fail(k, "missing");
            return &*it;
        };
        dt = get("dtype");
        sh = get("shape");
        off = get("data_offsets");
    } else if (v.is_array()) {  // serde's positional form of a struct
        if (v.size() != 3) fail("entry", "an array entry must have 3 elements (dtype, shape, data_offsets)");
        dt = &v[0];
        sh = &v[1];
        off = &v[2];
    } else {
        fail("entry", "not an object");
    }
    SafetensorsTensorInfo t;
    t.name = name;
    if (!dt->is_string()) fail("dtype", "not a string");
    const auto d = dtype_from_name(dt->get_ref<const std::string&>());
    if (!d) fail("dtype", "unknown dtype '" + dt->get<std::string>() + "'");
    t.dtype = *d;
    if (!sh->is_array()) fail("shape", "not an array");
    t.shape.reserve(sh->size());
    for (const auto& e : *sh) {
        const auto u = json_usize(e);
        if (!u) fail("shape", "element " + e.dump() + " is not an unsigned 64-bit integer");
        t.shape.push_back(*u);
    }
    if (!off->is_array() || off->size() != 2) fail("data_offsets", "not an array of two offsets");
    const auto b = json_usize((*off)[0]), e = json_usize((*off)[1]);
    if (!b || !e) fail("data_offsets", "offsets must be unsigned 64-bit integers");
    t.begin = *b;
    t.end = *e;
    return t;
}

}  // namespace detail

/// Parses and validates the header of the safetensors file whose whole content is `file`
/// (`filename` is used in error messages only). Throws ptq::file_error.
inline SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file, const std::string& filename) {
    using nlohmann::json;
    auto fail = [&](const std::string& field, const std::string& what) -> void {
        throw file_error(filename, field, what);
    };
    SafetensorsHeader h;
    if (file.size() < 8)
        fail("header size", "file is " + std::to_string(file.size()) + " bytes, shorter than the 8-byte header size");
    std::uint64_t n = 0;
    std::memcpy(&n, file.data(), 8);
    if (n > safetensors_max_header_size)
        fail("header size",
             std::to_string(n) + " bytes exceeds the limit of " + std::to_string(safetensors_max_header_size));
    if (n > file.size() - 8)
        fail("header size", std::to_string(n) + " bytes of header but the file has only " +
                                std::to_string(file.size() - 8) + " bytes after the size field");
    h.header_size = n;
    const char* text = reinterpret_cast<const char*>(file.data() + 8);
    if (n >= 3 && static_cast<unsigned char>(text[0]) == 0xEF && static_cast<unsigned char>(text[1]) == 0xBB &&
        static_cast<unsigned char>(text[2]) == 0xBF)
        fail("header", "starts with a UTF-8 byte-order mark");

    // Nesting and duplicate keys are checked while parsing: a valid header nests at most
    // root object > entry > shape / data_offsets array.
    std::set<std::string> top_keys, entry_keys;
    auto cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
        if ((ev == json::parse_event_t::object_start || ev == json::parse_event_t::array_start) && depth >= 3)
            fail("header", "JSON nested deeper than a safetensors header");
        if (ev == json::parse_event_t::object_start && depth == 1) entry_keys.clear();
        if (ev == json::parse_event_t::key && depth == 1) {
            if (!top_keys.insert(parsed.get<std::string>()).second)
                fail("header", "key '" + parsed.get<std::string>() + "' appears twice");
        }
        if (ev == json::parse_event_t::key && depth == 2) {
            if (!entry_keys.insert(parsed.get<std::string>()).second)
                fail("header", "field '" + parsed.get<std::string>() + "' appears twice in one entry");
        }
        return true;
    };
    json j;
    try {
        j = json::parse(text, text + n, cb);
    } catch (const json::exception& e) {
        fail("header", std::string("not valid UTF-8 JSON: ") + e.what());
    }
    if (!j.is_object()) fail("header", "not a JSON object");

    for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.key() == "__metadata__") {
            const json& m = it.value();
            if (m.is_null()) continue;
            if (!m.is_object()) fail("__metadata__", "not an object");
            for (auto mi = m.begin(); mi != m.end(); ++mi) {
                if (!mi.value().is_string()) fail("__metadata__", "value of '" + mi.key() + "' is not a string");
                h.metadata.emplace(mi.key(), mi.value().get<std::string>());
            }
            continue;
        }
        h.tensors.push_back(detail::parse_safetensors_entry(filename, it.key(), it.value()));
    }
    std::sort(h.tensors.begin(), h.tensors.end(), [](const auto& a, const auto& b) {
        return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
    });
    // Metadata::validate: contiguous from 0, byte count = nelem * bits / 8.
    std::uint64_t start = 0;
    for (const auto& t : h.tensors) {
        const std::string where = "tensor '" + t.name + "': ";
        if (t.begin != start || t.end < t.begin)
            fail(where + "data_offsets", "[" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                                             "] does not start where the previous tensor ends (" +
                                             std::to_string(start) + "): gap, overlap or reversed offsets");
        start = t.end;
        std::uint64_t nel = 1, nbits = 0;
        for (auto d : t.shape)
            if (!detail::checked_mul(nel, d, nel)) fail(where + "shape", "element count overflows 64 bits");
        if (!detail::checked_mul(nel, bits_per_element(t.dtype), nbits))
            fail(where + "shape", "bit count overflows 64 bits");
        if (nbits % 8 != 0)
            fail(where + "shape", std::to_string(nel) + " elements of " + std::string(dtype_name(t.dtype)) +
                                      " are not a whole number of bytes");
        if (t.end - t.begin != nbits / 8)
            fail(where + "data_offsets", "holds " + std::to_string(t.end - t.begin) + " bytes but " +
                                             std::to_string(nel) + " elements of " + std::string(dtype_name(t.dtype)) +
                                             " need " + std::to_string(nbits / 8));
    }
    if (start != file.size() - 8 - n)
        fail("data_offsets", "the tensors end at data offset " + std::to_string(start) + " but the data buffer has " +
                                 std::to_string(file.size() - 8 - n) + " bytes (truncated file or trailing bytes)");
    return h;
}

/// A zero-copy view of one tensor of a file (valid while the file object lives and is not moved).
struct TensorView {
    std::string_view file;  ///< file name, for messages
    std::string_view name;
    DType dtype = DType::F32;
    std::span<const std::uint64_t> shape;  ///< row-major, outermost first
    std::span<const std::byte> data;       ///< exactly numel * bits / 8 bytes
    std::uint64_t numel() const noexcept {
        std::uint64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
};

/// The elements of `t` in place as T (e.g. float for F32, std::uint16_t for F16 / BF16 bits,
/// std::uint8_t for U8 / F8 / packed F4): see typed_span.
template <class T>
std::span<const T> as_span(const TensorView& t) {
    return typed_span<T>(t.data, bits_per_element(t.dtype), std::string(t.file),
                         "tensor '" + std::string(t.name) + "'");
}

/// The elements of `t` as float (see decode_to_float for each dtype). Throws ptq::file_error
/// (field "tensor '<name>': dtype") for C64, F4 and F6_*.
inline std::vector<float> to_float(const TensorView& t) {
    if (!has_float_conversion(t.dtype))
        throw file_error(std::string(t.file), "tensor '" + std::string(t.name) + "': dtype",
                         std::string(dtype_name(t.dtype)) + " has no conversion to float (read its raw bytes)");
    std::vector<float> out(static_cast<std::size_t>(t.numel()));
    decode_to_float(t.dtype, t.data, out);
    return out;
}

/// A rank-2 tensor as a row-major float matrix [shape[0] x shape[1]]. Throws ptq::file_error
/// (field "tensor '<name>': shape") for another rank.
inline RowMatrixXf to_matrix(const TensorView& t) {
    if (t.shape.size() != 2)
        throw file_error(std::string(t.file), "tensor '" + std::string(t.name) + "': shape",
                         "rank " + std::to_string(t.shape.size()) + ", a matrix needs rank 2");
    const std::vector<float> v = to_float(t);
    RowMatrixXf m(static_cast<Eigen::Index>(t.shape[0]), static_cast<Eigen::Index>(t.shape[1]));
    std::copy(v.begin(), v.end(), m.data());
    return m;
}

/// A validated safetensors file: memory-mapped from a path, or over bytes the caller keeps alive.
class SafetensorsFile {
public:
    /// Maps and validates `path`; throws ptq::file_error.
    explicit SafetensorsFile(const std::filesystem::path& path)
        : map_(path), bytes_(map_.bytes()), name_(path.string()), header_(parse_safetensors_header(bytes_, name_)) {}
    /// Validates `bytes` (not copied: they must outlive this object); `name` is for messages.
    SafetensorsFile(std::span<const std::byte> bytes, std::string name)
        : bytes_(bytes), name_(std::move(name)), header_(parse_safetensors_header(bytes_, name_)) {}

    const std::string& filename() const noexcept { return name_; }
    const SafetensorsHeader& header() const noexcept { return header_; }
    const std::map<std::string, std::string>& metadata() const noexcept { return header_.metadata; }
    /// Entries sorted by data offset.
    const std::vector<SafetensorsTensorInfo>& tensors() const noexcept { return header_.tensors; }
    bool contains(std::string_view name) const noexcept { return header_.find(name) != nullptr; }

    TensorView tensor(const SafetensorsTensorInfo& t) const noexcept {
        const std::size_t off = static_cast<std::size_t>(header_.data_offset() + t.begin);
        return {name_, t.name, t.dtype, t.shape, bytes_.subspan(off, static_cast<std::size_t>(t.end - t.begin))};
    }
    /// The tensor called `name`; throws ptq::file_error (field "tensor '<name>'") if absent.
    TensorView tensor(std::string_view name) const {
        const auto* t = header_.find(name);
        if (t == nullptr) throw file_error(name_, "tensor '" + std::string(name) + "'", "not in the file");
        return tensor(*t);
    }

private:
    MappedFile map_;
    std::span<const std::byte> bytes_;
    std::string name_;
    SafetensorsHeader header_;
};

/// A tensor to write: the bytes are the little-endian elements in row-major order.
struct TensorData {
    std::string name;
    DType dtype = DType::F32;
    std::vector<std::uint64_t> shape;
    std::span<const std::byte> data;
};

/// A tensor declared to SafetensorsStreamWriter: its bytes come later.
struct SafetensorsEntry {
    std::string name;
    DType dtype = DType::F32;
    std::vector<std::uint64_t> shape;  ///< row-major, outermost first
};

namespace detail {
/// The reference writer's order: decreasing dtype (in its declaration order, which is
/// increasing alignment), then name. Keeps every tensor aligned to its element size.
inline int safetensors_dtype_rank(DType t) noexcept {
    switch (t) {
        case DType::BOOL: return 0;
        case DType::F4: return 1;
        case DType::F6_E2M3: return 2;
        case DType::F6_E3M2: return 3;
        case DType::U8: return 4;
        case DType::I8: return 5;
        case DType::F8_E5M2: return 6;
        case DType::F8_E4M3: return 7;
        case DType::F8_E8M0: return 8;
        case DType::F8_E4M3FNUZ: return 9;
        case DType::F8_E5M2FNUZ: return 10;
        case DType::I16: return 11;
        case DType::U16: return 12;
        case DType::F16: return 13;
        case DType::BF16: return 14;
        case DType::I32: return 15;
        case DType::U32: return 16;
        case DType::F32: return 17;
        case DType::C64: return 18;
        case DType::F64: return 19;
        case DType::I64: return 20;
        case DType::U64: return 21;
    }
    return 0;
}

/// Validates the declarations (reserved or repeated name, shape that overflows or is not a
/// whole number of bytes) and lays the file out: tensors in the reference writer's order,
/// "__metadata__" first with "format": "pt" added unless present.
inline TensorFileLayout safetensors_layout(const std::string& file, std::span<const SafetensorsEntry> tensors,
                                           std::map<std::string, std::string> metadata) {
    TensorFileLayout l;
    l.offset.resize(tensors.size());  // relative to the data buffer until the header size is known
    l.nbytes.resize(tensors.size());
    std::set<std::string_view> names;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const auto& t = tensors[i];
        const std::string where = "tensor '" + t.name + "'";
        if (t.name == "__metadata__") throw file_error(file, where, "the name is reserved for the metadata");
        if (!names.insert(t.name).second) throw file_error(file, where, "name given twice");
        l.names.push_back(t.name);
        std::uint64_t nel = 1, nbits = 0;
        for (auto d : t.shape)
            if (!checked_mul(nel, d, nel)) throw file_error(file, where + ": shape", "element count overflows 64 bits");
        if (!checked_mul(nel, bits_per_element(t.dtype), nbits) || nbits % 8 != 0)
            throw file_error(file, where + ": shape",
                             "not a whole number of bytes of " + std::string(dtype_name(t.dtype)));
        l.nbytes[i] = nbits / 8;
    }
    std::vector<std::size_t> order(tensors.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        const int ra = safetensors_dtype_rank(tensors[a].dtype), rb = safetensors_dtype_rank(tensors[b].dtype);
        return ra != rb ? ra > rb : tensors[a].name < tensors[b].name;
    });
    metadata.try_emplace("format", "pt");  // transformers refuses files without it
    nlohmann::ordered_json j;
    j["__metadata__"] = metadata;
    std::uint64_t data_size = 0;
    for (std::size_t i : order) {
        const auto& t = tensors[i];
        // data_size stays below 2^64 - 8 - the largest header, so every file offset fits.
        if (l.nbytes[i] > std::numeric_limits<std::uint64_t>::max() - 8 - safetensors_max_header_size - data_size)
            throw file_error(file, "tensor '" + t.name + "': shape", "the data buffer size overflows 64 bits");
        nlohmann::ordered_json e;
        e["dtype"] = std::string(dtype_name(t.dtype));
        e["shape"] = t.shape;
        e["data_offsets"] = {data_size, data_size + l.nbytes[i]};
        l.offset[i] = data_size;
        data_size += l.nbytes[i];
        j[t.name] = std::move(e);
    }
    std::string json = j.dump();
    json.resize((json.size() + 7) / 8 * 8, ' ');
    if (json.size() > safetensors_max_header_size)
        throw file_error(file, "header size",
                         std::to_string(json.size()) + " bytes exceeds the limit of " +
                             std::to_string(safetensors_max_header_size));
    const std::uint64_t n = json.size();
    l.header.resize(8 + json.size());
    std::memcpy(l.header.data(), &n, 8);
    std::memcpy(l.header.data() + 8, json.data(), json.size());
    for (auto& o : l.offset) o += l.header.size();
    l.file_size = l.header.size() + data_size;
    return l;
}

}  // namespace detail

/// Writes a safetensors file tensor by tensor, without holding the data: every tensor is
/// declared up front (name, dtype, shape), the constructor lays the file out (the layout of
/// write_safetensors) and writes the header to a temporary file next to `path`; then write()
/// places each tensor's bytes (little-endian elements, row-major) at its offset, in any order;
/// commit() checks that every declared tensor was written and renames the file over `path`
/// (see TensorFileWriter). Destroyed without commit(), it removes the temporary file.
class SafetensorsStreamWriter : public TensorFileWriter {
public:
    /// Throws ptq::file_error: a reserved or repeated name, a shape that overflows or is not a
    /// whole number of bytes, a header over the size limit (before any file is created), the
    /// temporary file not created.
    SafetensorsStreamWriter(const std::filesystem::path& path, std::span<const SafetensorsEntry> tensors,
                            std::map<std::string, std::string> metadata = {})
        : TensorFileWriter(path, detail::safetensors_layout(path.string(), tensors, std::move(metadata))) {}
};

namespace detail {
inline std::vector<SafetensorsEntry> safetensors_entries(std::span<const TensorData> tensors) {
    std::vector<SafetensorsEntry> e;
    e.reserve(tensors.size());
    for (const auto& t : tensors) e.push_back({t.name, t.dtype, t.shape});
    return e;
}
}  // namespace detail

/// The bytes of a safetensors file holding `tensors` (for tests and in-memory use): the bytes
/// write_safetensors writes.
inline std::vector<std::byte> serialize_safetensors(std::span<const TensorData> tensors,
                                                    std::map<std::string, std::string> metadata = {}) {
    std::vector<std::span<const std::byte>> data;
    for (const auto& t : tensors) data.push_back(t.data);
    return detail::assemble_tensor_file(
        detail::safetensors_layout("<memory>", detail::safetensors_entries(tensors), std::move(metadata)), data);
}

/// Writes a safetensors file: tensors in the reference writer's order (dtype then name), the
/// JSON header padded with spaces to a multiple of 8, "__metadata__" with "format": "pt" added
/// unless `metadata` has a "format". All or nothing: a temporary file in the same directory is
/// renamed over `path` at the end (through SafetensorsStreamWriter). Throws ptq::file_error (a
/// duplicate or reserved name, a byte count that does not match the shape, an I/O error).
inline void write_safetensors(const std::filesystem::path& path, std::span<const TensorData> tensors,
                              std::map<std::string, std::string> metadata = {}) {
    SafetensorsStreamWriter w(path, detail::safetensors_entries(tensors), std::move(metadata));
    for (std::size_t i = 0; i < tensors.size(); ++i) w.write(i, tensors[i].data);
    w.commit();
}

}  // namespace ptq::io
