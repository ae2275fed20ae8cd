#pragma once
// Granularity policies: which elements of a matrix share one set of quantization parameters.
//
// Orientation (docs/DESIGN.md §2): a weight W is [out_features x in_features] (rows = output
// channels), activations X are [tokens x in_features]. Groups and MX blocks always run along
// the columns (in_features, the reduction dimension). A group size that does not divide the
// number of columns is legal: the last group of each row is shorter ("ragged").
#include <cstddef>
#include <string>
#include <type_traits>

#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>

namespace ptq {

/// The resolved layout of groups for a rows x cols matrix (docs/DESIGN.md §7): parameters are
/// stored as a row-major [row_groups x col_groups] array; group (rg, cg) covers rows
/// [rg*group_rows, min(rows, (rg+1)*group_rows)) and columns [cg*group_cols, min(cols, (cg+1)*group_cols)).
/// Every policy has group_rows = 1 except PerTensor (group_rows = rows, group_cols = cols: one
/// group, which is contiguous in a row-major matrix).
struct GroupLayout {
    std::size_t rows = 0, cols = 0;
    std::size_t group_rows = 1;  ///< rows per group (1; rows for PerTensor)
    std::size_t group_cols = 0;  ///< columns per group along a row (cols for per-channel and per-tensor)

    std::size_t row_groups() const noexcept { return group_rows == 0 ? 0 : (rows + group_rows - 1) / group_rows; }
    std::size_t col_groups() const noexcept { return group_cols == 0 ? 0 : (cols + group_cols - 1) / group_cols; }
    std::size_t num_groups() const noexcept { return row_groups() * col_groups(); }
    /// Row group of row r.
    std::size_t row_group(std::size_t r) const noexcept { return r / group_rows; }
    /// Index into the parameter array of the group that holds element (r, c).
    std::size_t group_index(std::size_t r, std::size_t c) const noexcept {
        return row_group(r) * col_groups() + c / group_cols;
    }
    std::size_t group_begin(std::size_t cg) const noexcept { return cg * group_cols; }
    std::size_t group_end(std::size_t cg) const noexcept {
        const std::size_t e = (cg + 1) * group_cols;
        return e < cols ? e : cols;
    }
    std::size_t row_group_begin(std::size_t rg) const noexcept { return rg * group_rows; }
    std::size_t row_group_end(std::size_t rg) const noexcept {
        const std::size_t e = (rg + 1) * group_rows;
        return e < rows ? e : rows;
    }
    friend bool operator==(const GroupLayout&, const GroupLayout&) = default;
};

/// One parameter set for the whole tensor.
struct PerTensor {
    static constexpr const char* name() { return "per-tensor"; }
    GroupLayout layout(std::size_t rows, std::size_t cols) const noexcept {
        return {rows, cols, rows > 0 ? rows : 1, cols};
    }
};

/// One parameter set per output channel: per row of W.
struct PerChannel {
    static constexpr const char* name() { return "per-channel"; }
    GroupLayout layout(std::size_t rows, std::size_t cols) const noexcept { return {rows, cols, 1, cols}; }
};

/// One parameter set per token: per row of X (the activation twin of PerChannel).
struct PerToken {
    static constexpr const char* name() { return "per-token"; }
    GroupLayout layout(std::size_t rows, std::size_t cols) const noexcept { return {rows, cols, 1, cols}; }
};

/// Marks a group size chosen at run time: PerGroup<dynamic_group>{g}.
inline constexpr std::size_t dynamic_group = 0;

/// Groups of G consecutive columns within each row (G = dynamic_group: size given at run time).
/// The last group of a row is shorter when G does not divide the number of columns.
template <std::size_t G = dynamic_group>
struct PerGroup {
    static constexpr std::size_t static_size = G;

    constexpr PerGroup() noexcept requires(G != dynamic_group) = default;
    /// Runtime group size; throws ptq::invalid_argument if group_size == 0.
    explicit PerGroup(std::size_t group_size) requires(G == dynamic_group) : size_(group_size) {
        if (group_size == 0) detail::throw_invalid("PerGroup", "group_size", "must be at least 1");
    }

    constexpr std::size_t group_size() const noexcept { return G != dynamic_group ? G : size_; }
    constexpr std::size_t num_groups(std::size_t cols) const noexcept {
        return (cols + group_size() - 1) / group_size();
    }
    constexpr std::size_t group_of(std::size_t col) const noexcept { return col / group_size(); }
    static constexpr const char* name() { return "per-group"; }
    GroupLayout layout(std::size_t rows, std::size_t cols) const noexcept { return {rows, cols, 1, group_size()}; }

private:
    std::size_t size_ = G;
};

template <class T>
struct is_per_group : std::false_type {};
template <std::size_t G>
struct is_per_group<PerGroup<G>> : std::true_type {};

/// A granularity policy.
template <class P>
concept Granularity = std::is_same_v<P, PerTensor> || std::is_same_v<P, PerChannel> || std::is_same_v<P, PerToken> ||
    is_per_group<P>::value;

/// The granularity a format implies by default: the MX block for MX formats, else per-channel.
template <class F>
struct default_granularity {
    using type = PerChannel;
};
template <MxFormat F>
struct default_granularity<F> {
    using type = PerGroup<F::block>;
};
template <class F>
using default_granularity_t = typename default_granularity<F>::type;

namespace detail {
/// True when P is PerGroup<F::block> or PerGroup<dynamic_group> (P::static_size only exists
/// for PerGroup, so it must not be named for the other policies).
template <class F, class P>
constexpr bool is_mx_block_granularity() {
    if constexpr (is_per_group<P>::value) return P::static_size == F::block || P::static_size == dynamic_group;
    else return false;
}
}  // namespace detail

/// Checks that a (format, granularity) pair makes sense; MX formats only accept their block.
template <class F, class P>
constexpr void check_granularity() {
    static_assert(Granularity<P>, "ptq: granularity must be PerTensor, PerChannel, PerToken or PerGroup<G>");
    if constexpr (F::is_mx) {
        static_assert(detail::is_mx_block_granularity<F, P>(),
                      "ptq: an MX format carries its own block granularity: use PerGroup<Format::block> "
                      "(or omit the granularity)");
    }
}

/// check_granularity<F, P>() plus what the types cannot check: a runtime PerGroup size for an
/// MX format must equal its block (ptq::invalid_argument naming 'granularity').
template <class F, class P>
void check_granularity(const P& policy) {
    check_granularity<F, P>();
    if constexpr (F::is_mx && is_per_group<P>::value) {
        if (policy.group_size() != F::block)
            detail::throw_invalid("quantize", "granularity",
                                  "an MX format's group must equal its block size " + std::to_string(F::block));
    }
}

/// Resolves the layout of a rows x cols matrix after check_granularity<F>(policy).
template <class F, class P>
GroupLayout resolve_layout(const P& policy, std::size_t rows, std::size_t cols) {
    check_granularity<F>(policy);
    return policy.layout(rows, cols);
}

}  // namespace ptq
