#pragma once
// LayerTensor: one named tensor of a checkpoint layer as owned raw bytes (row-major,
// little-endian elements): what the layout exporters produce and the layout readers take.
// A safetensors writer stores it as is (name, dtype, shape, bytes).
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ptq/error.hpp>
#include <ptq/io/dtype.hpp>

namespace ptq::io {

/// A named tensor: dtype, shape (row-major, outermost dimension first, as in safetensors and
/// PyTorch) and its bytes, elements little-endian.
struct LayerTensor {
    std::string name;
    DType dtype = DType::U8;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> data;

    /// Number of elements (product of the shape; 1 for rank 0).
    std::size_t numel() const noexcept {
        std::size_t n = 1;
        for (std::int64_t d : shape) n *= static_cast<std::size_t>(d);
        return n;
    }
    /// Bytes of one element (dtypes of 8 bits and wider only).
    std::size_t element_bytes() const noexcept { return bits_per_element(dtype) / 8; }

    /// Little-endian unsigned value of element i (width = element_bytes(), at most 8).
    std::uint64_t load_bits(std::size_t i) const noexcept {
        const std::size_t w = element_bytes();
        std::uint64_t v = 0;
        for (std::size_t k = 0; k < w; ++k) v |= std::uint64_t(data[i * w + k]) << (8 * k);
        return v;
    }
    /// Writes the low element_bytes() bytes of v, little-endian, as element i.
    void store_bits(std::size_t i, std::uint64_t v) noexcept {
        const std::size_t w = element_bytes();
        for (std::size_t k = 0; k < w; ++k) data[i * w + k] = static_cast<std::uint8_t>(v >> (8 * k));
    }
    /// Element i of an I32 / U32 tensor as a signed 32-bit integer (two's complement).
    std::int32_t load_i32(std::size_t i) const noexcept {
        return static_cast<std::int32_t>(static_cast<std::uint32_t>(load_bits(i)));
    }
};

/// A zero-filled tensor of the given name, dtype and shape.
inline LayerTensor make_tensor(std::string name, DType dtype, std::vector<std::int64_t> shape) {
    LayerTensor t{std::move(name), dtype, std::move(shape), {}};
    for (std::int64_t d : t.shape)
        if (d < 0)
            ptq::detail::throw_invalid("io::make_tensor", "shape", "negative dimension in tensor '" + t.name + "'");
    t.data.assign(t.numel() * t.element_bytes(), 0);
    return t;
}

/// `prefix + "." + suffix` (just `suffix` when the prefix is empty).
inline std::string tensor_name(std::string_view prefix, std::string_view suffix) {
    if (prefix.empty()) return std::string(suffix);
    std::string s(prefix);
    s += '.';
    s += suffix;
    return s;
}

/// The tensor called `name` in `tensors`; throws ptq::invalid_argument naming `fn` and the
/// missing tensor if there is none, or if its dtype or rank differ from what is expected.
inline const LayerTensor& require_tensor(std::span<const LayerTensor> tensors, const std::string& name, DType dtype,
                                         std::size_t rank, const char* fn) {
    for (const LayerTensor& t : tensors) {
        if (t.name != name) continue;
        if (t.dtype != dtype)
            ptq::detail::throw_invalid(fn, name,
                                       "has dtype " + std::string(dtype_name(t.dtype)) + ", expected " +
                                           std::string(dtype_name(dtype)));
        if (t.shape.size() != rank)
            ptq::detail::throw_invalid(
                fn, name, "has rank " + std::to_string(t.shape.size()) + ", expected " + std::to_string(rank));
        if (t.data.size() != t.numel() * t.element_bytes())
            ptq::detail::throw_invalid(fn, name,
                                       "holds " + std::to_string(t.data.size()) + " bytes, its shape needs " +
                                           std::to_string(t.numel() * t.element_bytes()));
        return t;
    }
    ptq::detail::throw_invalid(fn, name, "tensor is missing");
}

/// True when a tensor called `name` is present.
inline bool has_tensor(std::span<const LayerTensor> tensors, std::string_view name) noexcept {
    for (const LayerTensor& t : tensors)
        if (t.name == name) return true;
    return false;
}

/// Throws ptq::invalid_argument unless t.shape == expected (message names fn and the tensor).
inline void require_shape(const LayerTensor& t, std::initializer_list<std::int64_t> expected, const char* fn) {
    if (std::vector<std::int64_t>(expected) == t.shape) return;
    auto str = [](const std::vector<std::int64_t>& s) {
        std::string r = "[";
        for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
        return r + "]";
    };
    ptq::detail::throw_invalid(fn, t.name,
                               "has shape " + str(t.shape) + ", expected " + str(std::vector<std::int64_t>(expected)));
}

}  // namespace ptq::io
