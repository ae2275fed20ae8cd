#pragma once
// The act-order ("desc_act") column map of a quantized matrix whose storage columns are a
// permutation of the original input columns (GPTQ with act_order and non-static groups).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <ptq/error.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq::io {

/// Where each original input column lives in the storage of a QuantizedMatrix, and its group.
struct ColumnMap {
    std::vector<std::size_t> storage_of;  ///< storage column of original column c
    std::vector<std::int32_t> g_idx;      ///< column group of original column c (its storage column / group_cols)
    bool permuted = false;                ///< storage_of is not the identity
};

/// The column map of q given storage_perm (storage column k holds original column
/// storage_perm[k], as GptqResult::storage_perm; empty = the identity). Throws
/// ptq::invalid_argument (naming `fn` and "storage_perm") unless storage_perm is empty or a
/// permutation of 0 .. q.cols()-1.
template <class F>
ColumnMap column_map(const QuantizedMatrix<F>& q, std::span<const std::size_t> storage_perm, const char* fn) {
    const std::size_t n = q.cols();
    ColumnMap m;
    m.storage_of.resize(n);
    m.g_idx.resize(n);
    if (storage_perm.empty()) {
        for (std::size_t c = 0; c < n; ++c) m.storage_of[c] = c;
    } else {
        if (storage_perm.size() != n)
            ptq::detail::throw_invalid(fn, "storage_perm",
                                       "has " + std::to_string(storage_perm.size()) + " entries, the matrix " +
                                           std::to_string(n) + " columns");
        std::vector<unsigned char> seen(n, 0);
        for (std::size_t k = 0; k < n; ++k) {
            const std::size_t c = storage_perm[k];
            if (c >= n || seen[c])
                ptq::detail::throw_invalid(fn, "storage_perm",
                                           "is not a permutation (entry " + std::to_string(k) + ")");
            seen[c] = 1;
            m.storage_of[c] = k;
            if (c != k) m.permuted = true;
        }
    }
    const std::size_t gc =
        (q.layout().group_rows > 1) || q.layout().group_cols == 0 ? (n ? n : 1) : q.layout().group_cols;
    for (std::size_t c = 0; c < n; ++c) m.g_idx[c] = static_cast<std::int32_t>(m.storage_of[c] / gc);
    return m;
}

/// A QuantizedMatrix read back from a checkpoint, and the input column each storage column
/// holds (storage column k = original input column storage_perm[k]; the identity unless the
/// file has an act-order g_idx), as GptqResult::storage_perm.
template <class F>
struct ImportedMatrix {
    QuantizedMatrix<F> quantized;
    std::vector<std::size_t> storage_perm;
};

/// The storage order of a file's act-order g_idx: the input columns sorted by group (stable),
/// so that storage columns [g * group_size, (g + 1) * group_size) are group g. Throws
/// ptq::invalid_argument naming `tensor` unless there are ceil(in / group_size) groups and
/// every group but the last has exactly group_size columns (then g_idx[storage_perm[k]] =
/// k / group_size for every k).
inline std::vector<std::size_t> storage_order_from_groups(std::span<const std::int32_t> g_idx, std::size_t group_size,
                                                          std::size_t groups, const std::string& tensor,
                                                          const char* fn) {
    const std::size_t in = g_idx.size();
    if (group_size == 0 || groups != (in + group_size - 1) / group_size)
        ptq::detail::throw_invalid(fn, tensor,
                                   std::to_string(groups) + " groups do not fit " + std::to_string(in) +
                                       " columns in groups of " + std::to_string(group_size));
    std::vector<std::size_t> perm(in);
    std::iota(perm.begin(), perm.end(), std::size_t{0});
    std::stable_sort(perm.begin(), perm.end(), [&](std::size_t a, std::size_t b) { return g_idx[a] < g_idx[b]; });
    for (std::size_t k = 0; k < in; ++k)
        if (g_idx[perm[k]] != std::int32_t(k / group_size))
            ptq::detail::throw_invalid(fn, tensor,
                                       "group " + std::to_string(g_idx[perm[k]]) + " does not have exactly " +
                                           std::to_string(group_size) + " columns (storage column " +
                                           std::to_string(k) + ")");
    return perm;
}

}  // namespace ptq::io
