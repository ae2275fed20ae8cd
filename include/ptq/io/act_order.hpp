#pragma once
// The act-order ("desc_act") column map of a quantized matrix whose storage columns are a
// permutation of the original input columns (GPTQ with act_order and non-static groups).
#include <cstddef>
#include <cstdint>
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
            detail::throw_invalid(fn, "storage_perm",
                                  "has " + std::to_string(storage_perm.size()) + " entries, the matrix " +
                                      std::to_string(n) + " columns");
        std::vector<unsigned char> seen(n, 0);
        for (std::size_t k = 0; k < n; ++k) {
            const std::size_t c = storage_perm[k];
            if (c >= n || seen[c])
                detail::throw_invalid(fn, "storage_perm", "is not a permutation (entry " + std::to_string(k) + ")");
            seen[c] = 1;
            m.storage_of[c] = k;
            if (c != k) m.permuted = true;
        }
    }
    const std::size_t gc = q.layout().whole_tensor || q.layout().group_cols == 0 ? (n ? n : 1) : q.layout().group_cols;
    for (std::size_t c = 0; c < n; ++c) m.g_idx[c] = static_cast<std::int32_t>(m.storage_of[c] / gc);
    return m;
}

}  // namespace ptq::io
