#pragma once
// The textbook GPTQ, column by column: the test oracle of the blocked ptq::Gptq (not part of
// the umbrella header ptq.hpp; the tests and bench/bench_gptq.cpp include it).
#include <algorithm>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/algo/detail/gptq_state.hpp>
#include <ptq/algo/gptq.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/granularity/granularity.hpp>

namespace ptq {

/// The naive column-by-column GPTQ (the test oracle): the same maths as Gptq (same
/// preparation, factor, units and parameter fitting), but every unit's error is propagated
/// immediately to all later columns, w_R -= E_B U_{B,R}, with no blocks and no lazy batch.
/// block_size is ignored. O(rows * in^2) memory traffic per column: small layers only.
template <QuantFormat F, class G = default_granularity_t<F>, class Arch = xsimd::default_arch, class DW, class DH>
GptqResult<F> gptq_naive(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DH>& h,
                         const GptqOptions& options = {}, const G& granularity = {}) {
    using Index = Eigen::Index;
    check_granularity<F>(granularity);
    detail::check_gptq_options<F>(options, "gptq_naive");
    detail::GptqState<F, G, GptqOptions, GptqResult<F>, Arch> st(options, granularity);
    st.prepare(w, h, "gptq_naive");
    const Index rows = st.rows(), n = st.cols(), m = st.unit(), gs = st.group_size();
    Eigen::MatrixXf& W = st.W();
    const Eigen::MatrixXf& U = st.factor();
    Eigen::MatrixXf d(rows, m);
    for (Index u0 = 0; u0 < n; u0 += m) {
        const Index u1 = std::min(u0 + m, n);
        if (st.dynamic_groups())
            for (Index g0 = ((u0 + gs - 1) / gs) * gs; g0 < u1; g0 += gs)
                st.fit_group(W.middleCols(g0, std::min(g0 + gs, n) - g0), st.group_of(g0));
        auto du = d.leftCols(u1 - u0);
        st.quantize_unit(u0, u1, du);
        st.scale_errors(u0, u1, du);
        for (Index j = u1; j < n; ++j)  // textbook update, one later column at a time
            for (Index b = 0; b < u1 - u0; ++b) W.col(j) -= du.col(b) * U(u0 + b, j);
    }
    return st.finish();
}

}  // namespace ptq
