#pragma once
// GGUF v3 files (ggml-org/ggml src/gguf.cpp): a validating, zero-copy reader over a memory
// mapping, a streaming writer (tensors declared up front, their bytes written in any order) and
// the all-or-nothing write_gguf on top of it.
//
// Layout (all little-endian): "GGUF", u32 version, i64 tensor count, i64 key/value count; each
// key/value: string key, i32 value type, value (an ARRAY is i32 element type, u64 count, the
// elements; arrays of arrays do not exist); each tensor info: string name, u32 n_dims, i64 ne[n_dims]
// (fastest-varying dimension first: a row-major [rows x cols] matrix is ne = [cols, rows]),
// i32 ggml type, u64 offset; zero padding to `general.alignment` (u32, a power of two, default
// 32); the data section, where each tensor starts at its offset and is zero-padded to the
// alignment. A string is a u64 length and that many bytes (no terminator).
//
// The reader rejects, with a ptq::file_error naming the file and the field, what
// gguf_init_from_file_impl rejects: a bad magic; version 0, 1, > 3 or a byte-swapped version;
// a negative tensor or key/value count; an empty or duplicate key; a string longer than 1 GiB or
// than the rest of the file; an array of more than 2^30 elements or longer than the rest of the
// file; an unknown value type or an array of arrays; general.alignment not a u32 power of two; a
// tensor name of 64 bytes or more, or given twice; n_dims > 4; a negative dimension; an element
// count or byte size that overflows; an unknown or removed ggml type; ne[0] not a multiple of
// the type's block size; an offset that is not the running sum of the previous tensors' sizes
// padded to the alignment; a data section (the last tensor's padding included) beyond the end
// of the file. Like ggml it reads versions 2 and 3 (same layout) and ignores trailing bytes.
// Stricter than ggml: a tensor name containing a NUL byte (ggml would silently cut the name
// there). Memory: everything allocated is bounded by the file size (string arrays: at most
// sizeof(std::string) / 8 = 4 times it, as in ggml).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <ptq/error.hpp>
#include <ptq/io/atomic_file.hpp>
#include <ptq/io/convert.hpp>
#include <ptq/io/gguf_types.hpp>
#include <ptq/io/mapped_file.hpp>
#include <ptq/io/tensor_file_writer.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq::io {

inline constexpr std::uint32_t gguf_version = 3;
inline constexpr std::uint64_t gguf_default_alignment = 32;
inline constexpr std::uint64_t gguf_max_string_length = 1024ull * 1024 * 1024;   // GGUF_MAX_STRING_LENGTH
inline constexpr std::uint64_t gguf_max_array_elements = 1024ull * 1024 * 1024;  // GGUF_MAX_ARRAY_ELEMENTS
inline constexpr std::size_t gguf_max_name = 64;                                 // GGML_MAX_NAME (names < 64 bytes)
inline constexpr std::size_t gguf_max_dims = 4;                                  // GGML_MAX_DIMS

namespace detail {
struct GgufUnused {
    bool operator==(const GgufUnused&) const = default;
};
struct GgufUnusedArray {
    bool operator==(const GgufUnusedArray&) const = default;
};
template <class T, class V>
struct is_variant_alternative : std::false_type {};
template <class T, class... Ts>
struct is_variant_alternative<T, std::variant<Ts...>> : std::bool_constant<(std::is_same_v<T, Ts> || ...)> {};
}  // namespace detail

/// A GGUF metadata value: a scalar of one of the 12 value types or an array of one of them.
/// The C++ type selects the GGUF type, so write `GgufValue(std::uint32_t{4096})` for a U32
/// (llama.cpp refuses other integer widths for its integer keys).
class GgufValue {
public:
    /// Alternative i < 13 is a scalar of GgufValueType i, alternative 13 + i an array of it
    /// (9, ARRAY, has placeholders).
    using Storage =
        std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t, std::int32_t, float, bool,
                     std::string, detail::GgufUnused, std::uint64_t, std::int64_t, double, std::vector<std::uint8_t>,
                     std::vector<std::int8_t>, std::vector<std::uint16_t>, std::vector<std::int16_t>,
                     std::vector<std::uint32_t>, std::vector<std::int32_t>, std::vector<float>, std::vector<bool>,
                     std::vector<std::string>, detail::GgufUnusedArray, std::vector<std::uint64_t>,
                     std::vector<std::int64_t>, std::vector<double>>;

    GgufValue() = default;
    /// From exactly one of the scalar or vector types above, without conversions: GgufValue(5)
    /// is an INT32 (int is std::int32_t), a `long long` or a `char` does not compile; write
    /// std::uint32_t{5} for a U32.
    template <class T>
    requires(detail::is_variant_alternative<std::decay_t<T>, Storage>::value &&
             !std::is_same_v<std::decay_t<T>, detail::GgufUnused> &&
             !std::is_same_v<std::decay_t<T>, detail::GgufUnusedArray>) GgufValue(T&& v)
        : v_(std::forward<T>(v)) {}  // NOLINT: implicit on purpose, the type is exact
    GgufValue(const char* s) : v_(std::string(s)) {}

    bool is_array() const noexcept { return v_.index() >= 13; }
    /// The value's GGUF type (ARRAY for arrays).
    GgufValueType type() const noexcept {
        return is_array() ? GgufValueType::ARRAY : static_cast<GgufValueType>(v_.index());
    }
    /// The element type of an array, or the type of a scalar.
    GgufValueType element_type() const noexcept {
        return static_cast<GgufValueType>(is_array() ? v_.index() - 13 : v_.index());
    }
    /// Number of elements of an array (1 for a scalar).
    std::size_t array_size() const noexcept {
        if (!is_array()) return 1;
        return std::visit(
            [](const auto& a) -> std::size_t {
                if constexpr (requires { a.size(); } && !std::is_same_v<std::decay_t<decltype(a)>, std::string>)
                    return a.size();
                else return 0;
            },
            v_);
    }
    template <class T>
    const T* get_if() const noexcept {
        return std::get_if<T>(&v_);
    }
    /// The value as T; throws ptq::invalid_argument if it holds another type.
    template <class T>
    const T& get() const {
        if (const T* p = std::get_if<T>(&v_)) return *p;
        ptq::detail::throw_invalid("io::GgufValue::get", "T",
                                   "the value is of GGUF type " + std::string(gguf_value_type_name(type())) +
                                       (is_array() ? " of " + std::string(gguf_value_type_name(element_type())) : ""));
    }
    const Storage& storage() const noexcept { return v_; }
    bool operator==(const GgufValue& o) const = default;

private:
    Storage v_;
};

/// Ordered key/value pairs, as stored in the file.
using GgufMetadata = std::vector<std::pair<std::string, GgufValue>>;

/// One tensor info of a GGUF file.
struct GgufTensorInfo {
    std::string name;
    GgmlType type = GgmlType::F32;
    std::vector<std::uint64_t> ne;  ///< n_dims entries, fastest-varying first
    std::uint64_t offset = 0;       ///< relative to the data section
    /// Number of elements (0 if any dimension is 0, whatever the others are).
    std::uint64_t numel() const noexcept {
        std::uint64_t n = 1;
        for (auto d : ne) {
            if (d == 0) return 0;
            n *= d;
        }
        return n;
    }
    /// Bytes of the tensor: numel / block_size * type_size (validated not to overflow).
    std::uint64_t nbytes() const noexcept {
        const auto tr = ggml_type_traits(type);
        return numel() / static_cast<std::uint64_t>(tr.block_size) * tr.type_size;
    }
};

/// The validated header of a GGUF file.
struct GgufHeader {
    std::uint32_t version = gguf_version;
    std::uint64_t alignment = gguf_default_alignment;
    GgufMetadata kv;
    std::vector<GgufTensorInfo> tensors;  ///< in file order (= offset order)
    std::uint64_t data_offset = 0;        ///< file offset of the data section
    std::uint64_t data_size = 0;          ///< bytes of the data section, padding included

    const GgufValue* find(std::string_view key) const noexcept {
        for (const auto& [k, v] : kv)
            if (k == key) return &v;
        return nullptr;
    }
    const GgufTensorInfo* find_tensor(std::string_view name) const noexcept {
        for (const auto& t : tensors)
            if (t.name == name) return &t;
        return nullptr;
    }
};

namespace detail {

inline std::uint64_t gguf_pad(std::uint64_t x, std::uint64_t a) noexcept { return (x + a - 1) / a * a; }

/// Bounds-checked little-endian cursor over the file (ggml's gguf_reader).
class GgufCursor {
public:
    GgufCursor(std::span<const std::byte> f, const std::string& name) : f_(f), name_(name) {}
    [[noreturn]] void fail(const std::string& field, const std::string& what) const {
        throw file_error(name_, field, what + " (at byte " + std::to_string(pos_) + ")");
    }
    std::uint64_t remaining() const noexcept { return f_.size() - pos_; }
    std::uint64_t tell() const noexcept { return pos_; }
    template <class T>
    T read(const std::string& field) {
        if (remaining() < sizeof(T)) fail(field, "unexpected end of file");
        T v;
        std::memcpy(&v, f_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string read_string(const std::string& field) {
        const auto n = read<std::uint64_t>(field + " length");
        if (n > gguf_max_string_length) fail(field, "string length " + std::to_string(n) + " exceeds 1 GiB");
        if (n > remaining()) fail(field, "string length " + std::to_string(n) + " exceeds the rest of the file");
        std::string s(reinterpret_cast<const char*>(f_.data() + pos_), static_cast<std::size_t>(n));
        pos_ += n;
        return s;
    }
    void seek(std::uint64_t p, const std::string& field) {
        if (p > f_.size()) fail(field, "offset " + std::to_string(p) + " is beyond the end of the file");
        pos_ = p;
    }

private:
    std::span<const std::byte> f_;
    const std::string& name_;
    std::uint64_t pos_ = 0;
};

template <class T>
GgufValue gguf_read_value(GgufCursor& c, const std::string& field, bool is_array, std::uint64_t n) {
    if (!is_array) {
        if constexpr (std::is_same_v<T, std::string>) return GgufValue(c.read_string(field));
        else if constexpr (std::is_same_v<T, bool>) return GgufValue(c.read<std::int8_t>(field) != 0);
        else return GgufValue(c.read<T>(field));
    }
    if (n > gguf_max_array_elements) c.fail(field, "array of " + std::to_string(n) + " elements exceeds 2^30");
    constexpr std::uint64_t min_size = std::is_same_v<T, std::string> ? 8 : std::is_same_v<T, bool> ? 1 : sizeof(T);
    if (n * min_size > c.remaining())
        c.fail(field, "array of " + std::to_string(n) + " elements exceeds the rest of the file");
    std::vector<T> v;
    v.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<T, std::string>) v.push_back(c.read_string(field));
        else if constexpr (std::is_same_v<T, bool>) v.push_back(c.read<std::int8_t>(field) != 0);
        else v.push_back(c.read<T>(field));
    }
    return GgufValue(std::move(v));
}

}  // namespace detail

/// Parses and validates the GGUF file whose whole content is `file` (`filename` is used in
/// error messages only). Throws ptq::file_error.
inline GgufHeader parse_gguf_header(std::span<const std::byte> file, const std::string& filename) {
    detail::GgufCursor c(file, filename);
    GgufHeader h;
    if (file.size() < 4 || std::memcmp(file.data(), "GGUF", 4) != 0)
        c.fail("magic", "not a GGUF file (magic is not \"GGUF\")");
    c.seek(4, "magic");
    h.version = c.read<std::uint32_t>("version");
    if (h.version == 0 || (h.version & 0xFFFFu) == 0)
        c.fail("version", std::to_string(h.version) + " is invalid (or the file has the other endianness)");
    if (h.version == 1) c.fail("version", "GGUF v1 is not supported");
    if (h.version > gguf_version) c.fail("version", std::to_string(h.version) + " is newer than 3");
    const auto n_tensors = c.read<std::int64_t>("tensor count");
    if (n_tensors < 0) c.fail("tensor count", std::to_string(n_tensors) + " is negative");
    const auto n_kv = c.read<std::int64_t>("key/value count");
    if (n_kv < 0) c.fail("key/value count", std::to_string(n_kv) + " is negative");

    std::set<std::string, std::less<>> keys;
    for (std::int64_t i = 0; i < n_kv; ++i) {
        const std::string kfield = "key #" + std::to_string(i);
        std::string key = c.read_string(kfield);
        if (key.empty()) c.fail(kfield, "empty key");
        if (!keys.insert(key).second) c.fail("key '" + key + "'", "duplicate key");
        const std::string field = "key '" + key + "'";
        auto type = c.read<std::int32_t>(field + " type");
        bool is_array = false;
        std::uint64_t n = 1;
        if (type == static_cast<std::int32_t>(GgufValueType::ARRAY)) {
            is_array = true;
            type = c.read<std::int32_t>(field + " element type");
            n = c.read<std::uint64_t>(field + " array length");
        }
        GgufValue v;
        switch (type) {
            case 0: v = detail::gguf_read_value<std::uint8_t>(c, field, is_array, n); break;
            case 1: v = detail::gguf_read_value<std::int8_t>(c, field, is_array, n); break;
            case 2: v = detail::gguf_read_value<std::uint16_t>(c, field, is_array, n); break;
            case 3: v = detail::gguf_read_value<std::int16_t>(c, field, is_array, n); break;
            case 4: v = detail::gguf_read_value<std::uint32_t>(c, field, is_array, n); break;
            case 5: v = detail::gguf_read_value<std::int32_t>(c, field, is_array, n); break;
            case 6: v = detail::gguf_read_value<float>(c, field, is_array, n); break;
            case 7: v = detail::gguf_read_value<bool>(c, field, is_array, n); break;
            case 8: v = detail::gguf_read_value<std::string>(c, field, is_array, n); break;
            case 10: v = detail::gguf_read_value<std::uint64_t>(c, field, is_array, n); break;
            case 11: v = detail::gguf_read_value<std::int64_t>(c, field, is_array, n); break;
            case 12: v = detail::gguf_read_value<double>(c, field, is_array, n); break;
            default:
                c.fail(field + " type",
                       "invalid GGUF value type " + std::to_string(type) + (is_array ? " in an array" : ""));
        }
        h.kv.emplace_back(std::move(key), std::move(v));
    }
    if (const GgufValue* a = h.find("general.alignment")) {
        const auto* u = a->get_if<std::uint32_t>();
        if (u == nullptr) c.fail("general.alignment", "must be of type u32");
        if (*u == 0 || (*u & (*u - 1)) != 0) c.fail("general.alignment", std::to_string(*u) + " is not a power of 2");
        h.alignment = *u;
    }

    std::set<std::string, std::less<>> names;
    for (std::int64_t i = 0; i < n_tensors; ++i) {
        GgufTensorInfo t;
        t.name = c.read_string("tensor #" + std::to_string(i) + " name");
        if (t.name.size() >= gguf_max_name)
            c.fail("tensor #" + std::to_string(i) + " name", "length " + std::to_string(t.name.size()) + " >= 64");
        // ggml keeps a name up to its first NUL (and compares names with strcmp): a name with a
        // NUL would mean another tensor there.
        if (t.name.find('\0') != std::string::npos)
            c.fail("tensor #" + std::to_string(i) + " name", "contains a NUL byte");
        const std::string field = "tensor '" + t.name + "'";
        if (!names.insert(t.name).second) c.fail(field, "duplicate tensor name");
        const auto n_dims = c.read<std::uint32_t>(field + " n_dims");
        if (n_dims > gguf_max_dims) c.fail(field + " n_dims", std::to_string(n_dims) + " > 4");
        std::int64_t ne[gguf_max_dims] = {1, 1, 1, 1};
        for (std::uint32_t j = 0; j < n_dims; ++j) {
            ne[j] = c.read<std::int64_t>(field + " ne");
            if (ne[j] < 0) c.fail(field + " ne", "dimension " + std::to_string(j) + " is negative");
            t.ne.push_back(static_cast<std::uint64_t>(ne[j]));
        }
        // ggml's check (skipped for an empty tensor); after it the product cannot overflow. An
        // empty tensor's other dimensions may be anything, so its product is never formed.
        constexpr std::int64_t imax = std::numeric_limits<std::int64_t>::max();
        const bool empty = ne[0] == 0 || ne[1] == 0 || ne[2] == 0 || ne[3] == 0;
        if (!empty && (imax / ne[1] <= ne[0] || imax / ne[2] <= ne[0] * ne[1] || imax / ne[3] <= ne[0] * ne[1] * ne[2]))
            c.fail(field + " ne", "the element count overflows int64");
        const std::uint64_t numel = empty ? 0 : static_cast<std::uint64_t>(ne[0] * ne[1] * ne[2] * ne[3]);
        const auto type = c.read<std::int32_t>(field + " type");
        if (type < 0 || !is_valid_ggml_type(static_cast<std::uint32_t>(type)))
            c.fail(field + " type", "invalid ggml type " + std::to_string(type));
        t.type = static_cast<GgmlType>(type);
        const auto tr = ggml_type_traits(t.type);
        if (ne[0] % tr.block_size != 0)
            c.fail(field + " ne", std::to_string(ne[0]) + " elements per row is not a multiple of the block size " +
                                      std::to_string(tr.block_size) + " of " + std::string(tr.name));
        const std::uint64_t nblocks = numel / static_cast<std::uint64_t>(tr.block_size);
        if (nblocks > std::numeric_limits<std::uint64_t>::max() / tr.type_size)
            c.fail(field + " ne", "the size in bytes overflows");
        t.offset = c.read<std::uint64_t>(field + " offset");
        h.tensors.push_back(std::move(t));
    }
    if (n_tensors > 0) c.seek(detail::gguf_pad(c.tell(), h.alignment), "data section");
    h.data_offset = c.tell();
    std::uint64_t size = 0;
    for (const auto& t : h.tensors) {
        if (t.offset != size)
            c.fail("tensor '" + t.name + "' offset", std::to_string(t.offset) + ", expected " + std::to_string(size) +
                                                         " (previous tensors padded to " + std::to_string(h.alignment) +
                                                         ")");
        const std::uint64_t nb = t.nbytes();
        if (nb > std::numeric_limits<std::uint64_t>::max() - h.alignment)
            c.fail("tensor '" + t.name + "'", "size overflow");
        const std::uint64_t padded = detail::gguf_pad(nb, h.alignment);
        if (std::numeric_limits<std::uint64_t>::max() - size < padded)
            c.fail("tensor '" + t.name + "'", "size overflow");
        size += padded;
    }
    h.data_size = size;
    if (size > file.size() - h.data_offset)
        c.fail("data section", std::to_string(size) + " bytes of tensor data (with padding) but the file has " +
                                   std::to_string(file.size() - h.data_offset) + " after the header (truncated file)");
    return h;
}

/// A zero-copy view of one tensor of a GGUF file (valid while the file object lives and is not moved).
struct GgufTensorView {
    std::string_view file;
    std::string_view name;
    GgmlType type = GgmlType::F32;
    std::span<const std::uint64_t> ne;  ///< fastest-varying first
    std::span<const std::byte> data;    ///< exactly the tensor's bytes (no padding)
    std::uint64_t numel() const noexcept {
        std::uint64_t n = 1;
        for (auto d : ne) n *= d;
        return n;
    }
};

/// The elements of a tensor of a non-block type (F32, F16, BF16, I8 ... F64) in place as T, or
/// its blocks as bytes with T = std::uint8_t: see typed_span.
template <class T>
std::span<const T> as_span(const GgufTensorView& t) {
    const auto tr = ggml_type_traits(t.type);
    const std::size_t bits = tr.block_size == 1 ? 8 * tr.type_size : 8;
    return typed_span<T>(t.data, bits, std::string(t.file), "tensor '" + std::string(t.name) + "'");
}

/// The elements of an F32 / F16 / BF16 tensor as float, in storage order (ne[0] fastest).
/// Throws ptq::file_error (field "tensor '<name>': type") for other types.
inline std::vector<float> to_float(const GgufTensorView& t) {
    if (!has_float_conversion(t.type))
        throw file_error(std::string(t.file), "tensor '" + std::string(t.name) + "': type",
                         "ggml type " + std::string(ggml_type_name(t.type)) + " has no direct conversion to float");
    std::vector<float> out(static_cast<std::size_t>(t.numel()));
    decode_to_float(t.type, t.data, out);
    return out;
}

/// A 2-D F32 / F16 / BF16 tensor as a row-major matrix [ne[1] x ne[0]]. Throws ptq::file_error.
inline RowMatrixXf to_matrix(const GgufTensorView& t) {
    if (t.ne.size() != 2)
        throw file_error(std::string(t.file), "tensor '" + std::string(t.name) + "': ne",
                         std::to_string(t.ne.size()) + " dimensions, a matrix needs 2");
    const std::vector<float> v = to_float(t);
    RowMatrixXf m(static_cast<Eigen::Index>(t.ne[1]), static_cast<Eigen::Index>(t.ne[0]));
    std::copy(v.begin(), v.end(), m.data());
    return m;
}

/// A validated GGUF file: memory-mapped from a path, or over bytes the caller keeps alive.
class GgufFile {
public:
    explicit GgufFile(const std::filesystem::path& path)
        : map_(path), bytes_(map_.bytes()), name_(path.string()), header_(parse_gguf_header(bytes_, name_)) {}
    GgufFile(std::span<const std::byte> bytes, std::string name)
        : bytes_(bytes), name_(std::move(name)), header_(parse_gguf_header(bytes_, name_)) {}

    const std::string& filename() const noexcept { return name_; }
    const GgufHeader& header() const noexcept { return header_; }
    const GgufMetadata& kv() const noexcept { return header_.kv; }
    const GgufValue* find(std::string_view key) const noexcept { return header_.find(key); }
    const std::vector<GgufTensorInfo>& tensors() const noexcept { return header_.tensors; }
    bool contains(std::string_view name) const noexcept { return header_.find_tensor(name) != nullptr; }
    GgufTensorView tensor(const GgufTensorInfo& t) const noexcept {
        return {name_, t.name, t.type, t.ne,
                bytes_.subspan(static_cast<std::size_t>(header_.data_offset + t.offset),
                               static_cast<std::size_t>(t.nbytes()))};
    }
    /// The tensor called `name`; throws ptq::file_error (field "tensor '<name>'") if absent.
    GgufTensorView tensor(std::string_view name) const {
        const auto* t = header_.find_tensor(name);
        if (t == nullptr) throw file_error(name_, "tensor '" + std::string(name) + "'", "not in the file");
        return tensor(*t);
    }

private:
    MappedFile map_;
    std::span<const std::byte> bytes_;
    std::string name_;
    GgufHeader header_;
};

/// A tensor to write: `ne` fastest-varying first, `data` exactly numel / block_size * type_size bytes.
struct GgufTensorData {
    std::string name;
    GgmlType type = GgmlType::F32;
    std::vector<std::uint64_t> ne;
    std::span<const std::byte> data;
};

/// A tensor declared to GgufStreamWriter: its bytes come later.
struct GgufEntry {
    std::string name;
    GgmlType type = GgmlType::F32;
    std::vector<std::uint64_t> ne;  ///< fastest-varying first
};

namespace detail {

/// Little-endian byte builder of a GGUF header.
struct GgufSink {
    std::vector<std::byte> out;
    void put(const void* p, std::size_t n) {
        const auto* b = static_cast<const std::byte*>(p);
        out.insert(out.end(), b, b + n);
    }
    template <class T>
    void put(T v) {
        put(&v, sizeof v);
    }
    void put_string(const std::string& s) {
        put(static_cast<std::uint64_t>(s.size()));
        put(s.data(), s.size());
    }
    /// Zero bytes up to a multiple of `a`.
    void pad(std::uint64_t a) { out.resize(static_cast<std::size_t>(gguf_pad(out.size(), a))); }
};

template <class T>
void gguf_put_scalar(GgufSink& s, const T& v) {
    if constexpr (std::is_same_v<T, std::string>) s.put_string(v);
    else if constexpr (std::is_same_v<T, bool>) s.put(static_cast<std::int8_t>(v ? 1 : 0));
    else s.put(v);
}

/// Checks the key/values and the tensor declarations and lays the file out.
inline TensorFileLayout gguf_layout(const std::string& file, std::span<const std::pair<std::string, GgufValue>> kv,
                                    std::span<const GgufEntry> tensors) {
    std::set<std::string_view> keys;
    std::uint64_t alignment = gguf_default_alignment;
    for (const auto& [k, v] : kv) {
        if (k.empty()) throw file_error(file, "key", "empty key");
        if (!keys.insert(k).second) throw file_error(file, "key '" + k + "'", "given twice");
        if (v.storage().index() == 9 || v.storage().index() == 22)
            throw file_error(file, "key '" + k + "'", "holds no value");
        if (v.array_size() > gguf_max_array_elements)
            throw file_error(file, "key '" + k + "'", "array longer than 2^30");
        if (k == "general.alignment") {
            const auto* u = v.get_if<std::uint32_t>();
            if (u == nullptr || *u == 0 || (*u & (*u - 1)) != 0)
                throw file_error(file, "general.alignment", "must be a u32 power of 2");
            alignment = *u;
        }
    }
    TensorFileLayout l;
    std::uint64_t data_size = 0;
    std::set<std::string_view> names;
    for (const auto& t : tensors) {
        const std::string field = "tensor '" + t.name + "'";
        if (t.name.size() >= gguf_max_name) throw file_error(file, field, "name of 64 bytes or more");
        if (t.name.find('\0') != std::string::npos) throw file_error(file, field, "name contains a NUL byte");
        if (!names.insert(t.name).second) throw file_error(file, field, "name given twice");
        l.names.push_back(t.name);
        if (!is_valid_ggml_type(static_cast<std::uint32_t>(t.type)))
            throw file_error(file, field + ": type", "invalid ggml type");
        if (t.ne.empty() || t.ne.size() > gguf_max_dims)
            throw file_error(file, field + ": ne", "needs 1 to 4 dimensions");
        std::uint64_t n = 1;
        for (auto d : t.ne)
            if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
                __builtin_mul_overflow(n, d, &n) ||
                n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                throw file_error(file, field + ": ne", "element count overflows int64");
        const auto tr = ggml_type_traits(t.type);
        if (t.ne[0] % static_cast<std::uint64_t>(tr.block_size) != 0)
            throw file_error(file, field + ": ne",
                             std::to_string(t.ne[0]) + " is not a multiple of the block size " +
                                 std::to_string(tr.block_size) + " of " + std::string(tr.name));
        std::uint64_t nb = 0, padded = 0;
        if (__builtin_mul_overflow(n / static_cast<std::uint64_t>(tr.block_size), tr.type_size, &nb) ||
            nb > std::numeric_limits<std::uint64_t>::max() - alignment ||
            __builtin_add_overflow(data_size, gguf_pad(nb, alignment), &padded))
            throw file_error(file, field + ": ne", "the size in bytes overflows");
        l.offset.push_back(data_size);  // relative to the data section until the header is known
        l.nbytes.push_back(nb);
        data_size = padded;
    }

    GgufSink s;
    s.put("GGUF", 4);
    s.put(gguf_version);
    s.put(static_cast<std::int64_t>(tensors.size()));
    s.put(static_cast<std::int64_t>(kv.size()));
    for (const auto& [k, v] : kv) {
        s.put_string(k);
        s.put(static_cast<std::int32_t>(v.type()));
        if (v.is_array()) {
            s.put(static_cast<std::int32_t>(v.element_type()));
            s.put(static_cast<std::uint64_t>(v.array_size()));
        }
        std::visit(
            [&](const auto& x) {
                using X = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<X, GgufUnused> || std::is_same_v<X, GgufUnusedArray>) {
                } else if constexpr (requires { typename X::value_type; } && !std::is_same_v<X, std::string>) {
                    for (const auto& e : x) gguf_put_scalar<typename X::value_type>(s, e);
                } else {
                    gguf_put_scalar(s, x);
                }
            },
            v.storage());
    }
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const auto& t = tensors[i];
        s.put_string(t.name);
        s.put(static_cast<std::uint32_t>(t.ne.size()));
        for (auto d : t.ne) s.put(static_cast<std::int64_t>(d));
        s.put(static_cast<std::int32_t>(t.type));
        s.put(l.offset[i]);
    }
    s.pad(alignment);
    l.header = std::move(s.out);
    if (data_size > std::numeric_limits<std::uint64_t>::max() - l.header.size())
        throw file_error(file, "data section", "the file size overflows");
    for (auto& o : l.offset) o += l.header.size();
    l.file_size = l.header.size() + data_size;
    return l;
}

inline std::vector<GgufEntry> gguf_entries(std::span<const GgufTensorData> tensors) {
    std::vector<GgufEntry> e;
    e.reserve(tensors.size());
    for (const auto& t : tensors) e.push_back({t.name, t.type, t.ne});
    return e;
}

}  // namespace detail

/// Writes a GGUF v3 file tensor by tensor, without holding the data: the key/value pairs and
/// every tensor (name, ggml type, ne) are declared up front; the constructor lays the file out
/// (the layout of write_gguf: each tensor at the running sum of the previous ones padded to
/// the alignment) and writes the header to a temporary file next to `path`; write() places a
/// tensor's bytes (numel / block_size blocks of its type) at its offset, in any order (the zero
/// padding comes from the file being sized in advance); commit() checks that every declared
/// tensor was written and renames the file over `path` (see TensorFileWriter). Destroyed
/// without commit(), it removes the temporary file.
class GgufStreamWriter : public TensorFileWriter {
public:
    /// Throws ptq::file_error for what write_gguf refuses (see there; before any file is
    /// created) and when the temporary file cannot be created.
    GgufStreamWriter(const std::filesystem::path& path, std::span<const std::pair<std::string, GgufValue>> kv,
                     std::span<const GgufEntry> tensors)
        : TensorFileWriter(path, detail::gguf_layout(path.string(), kv, tensors)) {}
};

/// The bytes of a GGUF v3 file holding `kv` and `tensors` (for tests and in-memory use): the
/// bytes write_gguf writes.
inline std::vector<std::byte> serialize_gguf(std::span<const std::pair<std::string, GgufValue>> kv,
                                             std::span<const GgufTensorData> tensors) {
    std::vector<std::span<const std::byte>> data;
    for (const auto& t : tensors) data.push_back(t.data);
    return detail::assemble_tensor_file(detail::gguf_layout("<memory>", kv, detail::gguf_entries(tensors)), data);
}

/// Writes a GGUF v3 file: the key/value pairs in the given order, the tensor infos, zero padding
/// to `general.alignment` (if present among `kv`: a u32 power of two; else 32), then each tensor
/// padded to the alignment (also the last one, as ggml writes). All or nothing (temporary file
/// renamed at the end, through GgufStreamWriter). Throws ptq::file_error for an empty or
/// duplicate key, a bad general.alignment, a tensor name of 64 bytes or more or given twice, 0
/// or more than 4 dimensions, ne[0] not a multiple of the block size, a byte count that does
/// not match, an I/O error.
inline void write_gguf(const std::filesystem::path& path, std::span<const std::pair<std::string, GgufValue>> kv,
                       std::span<const GgufTensorData> tensors) {
    GgufStreamWriter w(path, kv, detail::gguf_entries(tensors));
    for (std::size_t i = 0; i < tensors.size(); ++i) w.write(i, tensors[i].data);
    w.commit();
}

}  // namespace ptq::io
