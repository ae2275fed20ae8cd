#pragma once
// QuantizedMatrix<Format>: packed codes + per-group parameters + shape + layout.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/packing.hpp>

namespace ptq {

/// A quantized rows x cols matrix in format F.
///  - codes: the canonical packed layout of kernel/packing.hpp, row_stride() bytes per row;
///  - params: one F::Params per group, row-major [row_groups x col_groups] (GroupLayout):
///    IntFormat {float scale, int32 zero}, Minifloat {float scale}, MX {uint8 E8M0 byte}.
/// Decode element (r, c): F::dequantize(code(r, c), params at layout().group_index(r, c)).
template <QuantFormat F>
class QuantizedMatrix {
public:
    using format = F;
    using Params = typename F::Params;

    QuantizedMatrix() = default;
    explicit QuantizedMatrix(const GroupLayout& layout)
        : layout_(layout),
          stride_(packed_bytes(layout.cols, F::bits)),
          codes_(stride_ * layout.rows, 0),
          params_(layout.num_groups()) {}

    std::size_t rows() const noexcept { return layout_.rows; }
    std::size_t cols() const noexcept { return layout_.cols; }
    std::size_t size() const noexcept { return layout_.rows * layout_.cols; }
    const GroupLayout& layout() const noexcept { return layout_; }
    /// Bytes per packed row: ceil(cols * F::bits / 8).
    std::size_t row_stride() const noexcept { return stride_; }

    std::span<const std::uint8_t> packed() const noexcept { return codes_; }
    std::span<std::uint8_t> packed() noexcept { return codes_; }
    const std::uint8_t* row_data(std::size_t r) const noexcept { return codes_.data() + r * stride_; }
    std::uint8_t* row_data(std::size_t r) noexcept { return codes_.data() + r * stride_; }

    std::span<const Params> params() const noexcept { return params_; }
    std::span<Params> params() noexcept { return params_; }
    /// Parameters of the groups of row r (col_groups() entries: those of its row group).
    const Params* row_params(std::size_t r) const noexcept {
        return params_.data() + layout_.row_group(r) * layout_.col_groups();
    }
    Params* row_params(std::size_t r) noexcept { return params_.data() + layout_.row_group(r) * layout_.col_groups(); }
    /// Parameters of the group of element (r, c) (bounds-checked).
    const Params& params_at(std::size_t r, std::size_t c) const {
        check(r, c);
        return params_[layout_.group_index(r, c)];
    }

    /// Code of element (r, c) (bounds-checked).
    std::uint8_t code(std::size_t r, std::size_t c) const {
        check(r, c);
        return static_cast<std::uint8_t>(ref::get_code(row_data(r), c, F::bits));
    }
    /// Dequantized value of element (r, c) (bounds-checked, scalar).
    float value(std::size_t r, std::size_t c) const { return F::dequantize(code(r, c), params_at(r, c)); }

    /// Bytes of storage: packed codes plus parameters as stored in memory.
    std::size_t storage_bytes() const noexcept { return codes_.size() + params_.size() * sizeof(Params); }

private:
    void check(std::size_t r, std::size_t c) const {
        if (r >= rows() || c >= cols())
            detail::throw_invalid("QuantizedMatrix", "(row, col)",
                                  "(" + std::to_string(r) + ", " + std::to_string(c) + ") is outside " +
                                      std::to_string(rows()) + "x" + std::to_string(cols()));
    }

    GroupLayout layout_{};
    std::size_t stride_ = 0;
    std::vector<std::uint8_t> codes_;
    std::vector<Params> params_;
};

}  // namespace ptq
