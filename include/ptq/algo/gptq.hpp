#pragma once
// GPTQ: post-training quantization of a linear layer by sequential error compensation with
// the inverse Hessian of its calibration inputs, for every ptq format and granularity.
#include <algorithm>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <vector>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/algo/detail/gptq_state.hpp>
#include <ptq/detail/blas.hpp>
#include <ptq/detail/eigen.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/parallel.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

/// Options of Gptq. Plain struct; every default documented.
struct GptqOptions {
    /// Damping fraction: lambda = percdamp * mean(diag H) is added to the diagonal (0.01).
    double percdamp = 0.01;
    /// Columns per lazy-batch block (128). Rounded up to a multiple of the quantization unit
    /// (1 column, or the MX micro-block). Must be >= 1.
    std::size_t block_size = 128;
    /// Process columns in descending diag(H) order (false).
    bool act_order = false;
    /// Fit every group's parameters on the original weights before the column loop (false);
    /// otherwise a group's parameters are fitted when the loop enters it, from the current
    /// (already error-compensated) weights. Only meaningful for PerGroup / MX formats;
    /// per-tensor and per-channel parameters are always fitted on the original weights.
    bool static_groups = false;
    /// Rounding, widen_to_zero, MX scale rule and range method (min-max, or the MSE clipping
    /// search of observe/clip_search.hpp) of every group's parameters. `non_finite` is
    /// ignored: GPTQ always rejects NaN/Inf in W and H (an error would spread to every column).
    QuantOptions quant{};
    /// When the Cholesky factorisation of H + lambda I fails, lambda is multiplied by
    /// damping_growth (10) and the factorisation retried, at most max_damping_retries (12)
    /// times; then ptq::error is thrown (this needs an H with eigenvalues below
    /// -1e11 * mean(diag H), or a factor that overflows float).
    int max_damping_retries = 12;
    double damping_growth = 10.0;
    /// MX formats: columns quantized together as one unit (0 = Format::block). Must be a
    /// multiple of Format::block. Ignored by non-MX formats (their unit is one column).
    std::size_t mx_micro_block = 0;
    /// Also quantize with RTN and report its loss (costs one triangular solve, rows*in^2 flops).
    bool rtn_baseline = true;
};

/// What happened inside Gptq::quantize.
struct GptqDiagnostics {
    double mean_diag = 0.0;                 ///< mean(diag H) after the dead-channel fix (H_ii = 0 -> 1)
    double damping = 0.0;                   ///< lambda finally added to diag(H)
    int retries = 0;                        ///< failed Cholesky attempts before the one that succeeded
    std::vector<std::size_t> dead_columns;  ///< input channels with H_ii = 0 (W[:, i] was zeroed)
    /// Layer-output loss on the calibration data, measured with the damped Hessian
    /// Hd = H + lambda I (dead H_ii set to 1 first), L(W^) = tr((W - W^) Hd (W - W^)^T)
    /// = 2/n ||X (W - W^)^T||^2 + lambda ||W - W^||^2 when H = 2/n X^T X.
    /// GPTQ: L = ||E||_F^2 exactly, E the matrix of scaled errors (W - W^ = E U, U^T U = Hd^-1),
    /// so it costs nothing. RTN (same format, granularity and QuantOptions; dead columns
    /// excluded): ||(W - W^_rtn) U^-1||_F^2 by one triangular solve; NaN if rtn_baseline is off.
    double damped_loss_rtn = std::numeric_limits<double>::quiet_NaN();
    double damped_loss = 0.0;
};

/// Result of Gptq::quantize.
///
/// Layout. `quantized` holds the codes and parameters in *storage column order*; its own
/// layout() / dequantize() / value() are valid in that order. Storage order is the original
/// column order, except with act_order + non-static groups (PerGroup or MX), where the groups
/// are runs of consecutive *processed* columns: then storage column k is original column
/// perm[k] (`permuted_storage` = true) and a consumer either multiplies by x[perm] or rebuilds
/// the GPTQ/AutoGPTQ "g_idx" layout: code of original column c in row r =
/// quantized.code(r, inv_perm[c]), its group = g_idx[c] (parameters row_params(r)[g_idx[c]]).
template <QuantFormat F>
struct GptqResult {
    QuantizedMatrix<F> quantized;           ///< codes + params, storage column order
    RowMatrixXf dequantized;                ///< W^ in the original column order
    std::vector<std::size_t> perm;          ///< processing order: perm[k] = k-th processed original column
    std::vector<std::size_t> storage_perm;  ///< original column of storage column k
    bool permuted_storage = false;          ///< storage_perm is not the identity
    std::vector<std::size_t> g_idx;  ///< per original column: its group index (column group of quantized.layout())
    GptqDiagnostics diagnostics;
};

/// GPTQ quantizer of format F at granularity G (Eigen-decomposition style: options in the
/// constructor, quantize(W, H) to run). G is PerTensor, PerChannel or PerGroup<g> (MX formats:
/// their block, the default).
///
/// Maths (Frantar et al. 2022; docs/DESIGN.md §12). W is [out x in], H = 2/n sum x^T x [in x in]
/// (symmetric; see CalibrationStats). Let P be the processing order (identity, or descending
/// diag H with act_order), Hd = P (H + lambda I) P^T with dead channels (H_ii = 0) set to
/// H_ii = 1 and W[:, i] = 0, and U upper triangular with U^T U = Hd^-1 (computed in float as
/// J chol(J Hd J)^-1 J, see detail::upper_cholesky_of_inverse). Columns are processed in
/// units (one column; an MX micro-block of `mx_micro_block` columns for MX formats):
///   q_B  = Q(w_B)                      (all columns of the unit from the current weights;
///                                       a group's / MX block's parameters are fitted from
///                                       the current weights when the loop enters it)
///   E_B  = (w_B - q_B) U_BB^-1         (one column: (w_j - q_j) / U_jj; MX: a triangular
///                                       solve with the unit's diagonal block of U, which is
///                                       the optimal OBS update for fixing the whole unit at
///                                       once, [Hd^-1]_BB^-1 [Hd^-1]_{B,R} = U_BB^-1 U_{B,R};
///                                       the MX paper's Algorithm 1)
///   w_R -= E_B U_{B,R}                 (R = every later column)
/// so that W - W^ = E U and the damped loss tr((W - W^) Hd (W - W^)^T) = ||E||^2.
/// Implementation (the LDL form, detail::GptqFactor::ldl): with V = U^-1 (V V^T = Hd, one
/// Cholesky; no triangular inverse, which saves in^3/3 flops) the same updates read
///   w_R = w0_R + sum_{B<R} D_B V_{B,R} V_RR^-1,   D_B = w0_B - q_B (w0: the original weights)
/// since E = (W - W^) V. gptq_naive keeps the textbook U form above: the test oracle is an
/// independent formulation.
/// Lazy batches, three levels: the update of w_R is applied eagerly only inside a sub-block of
/// 16 columns (MX: one unit); the rest of the current block (block_size columns) receives one
/// GEMM per sub-block, the rest of the current super-block (block_size rounded up to >= 512
/// columns) one GEMM per block, and the columns after the super-block one GEMM per
/// super-block, D_super Vt_{super, R} (inner dimension 512: Eigen's GEMM runs ~20% faster
/// than at 128).
/// When a group starts while updates are still pending for some of its columns (a group
/// that does not fit in the current block), those columns are brought up to date before the
/// fit, so the result equals the naive column-by-column oracle (gptq_naive) up to float
/// summation order. All arithmetic after the Hessian is float (as in the reference); the
/// internal W copy is column-major in processing order (the column loop reads contiguous
/// memory, the GEMM updates are column-major GEMMs).
///
/// Memory (beyond W and H): the working W and the original w0 (2*rows*in floats), V (in^2
/// floats), the codes (rows*in bytes), the error block (rows*max(block, 512) floats), the result
/// (packed codes + params + the dequantized matrix, rows*in floats, allocated after w0 is
/// freed); the RTN baseline needs two more rows*in floats while the loop has not started.
template <QuantFormat F, class G = default_granularity_t<F>, class Arch = xsimd::default_arch>
class Gptq {
    static_assert(!std::is_same_v<G, PerToken>,
                  "ptq::Gptq: PerToken is an activation granularity; use PerChannel for weights");

public:
    /// Throws ptq::invalid_argument naming the option ('options.percdamp', ...) that is invalid.
    explicit Gptq(const GptqOptions& options = {}, const G& granularity = {}) : opt_(options), gran_(granularity) {
        check_granularity<F>(granularity);
        detail::check_gptq_options<F>(opt_, "Gptq");
    }
    const GptqOptions& options() const noexcept { return opt_; }
    const G& granularity() const noexcept { return gran_; }

    /// Quantizes W [out x in] (any dense Eigen expression) given the Hessian H [in x in].
    template <class DW, class DH>
    GptqResult<F> quantize(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DH>& h) const {
        using Index = Eigen::Index;
        detail::GptqState<F, G, GptqOptions, GptqResult<F>, Arch> st(opt_, gran_, detail::GptqFactor::ldl);
        st.prepare(w, h, "Gptq::quantize");
        const Index rows = st.rows(), n = st.cols(), m = st.unit(), bs = st.block();
        const Index sub = F::is_mx ? m : std::min<Index>(16, bs);           // eager sub-block
        const Index sbs = std::max<Index>(bs, ((512 + bs - 1) / bs) * bs);  // super-block
        const Eigen::MatrixXf& V = st.factor();                             // Vt (GptqFactor::ldl)
        const Index gs = st.group_size();
        // Rows are independent: the column loop runs on fixed blocks of row_block rows in
        // parallel (ptq::set_num_threads); the losses are summed in block order.
        constexpr Index row_block = 256;
        const auto tasks = std::size_t((rows + row_block - 1) / row_block);
        std::vector<double> losses(tasks, 0.0);
        detail::parallel_for(tasks, [&](std::size_t task) {
            auto t = st.row_task(Index(task) * row_block, std::min(row_block, rows - Index(task) * row_block));
            auto W = st.W().middleRows(t.r0, t.nr);
            Eigen::MatrixXf D(t.nr, std::min(sbs, n));  // errors w0_B - q_B of the current super-block
            Eigen::MatrixXf cur;
            // W[:, k0:k1] += D[:, x0:x1] V[x0:x1, k0:k1] (x: processed columns, D from S0 on).
            const auto update = [&](Index S0, Index x0, Index x1, Index k0, Index k1) {
                detail::gemm(W.middleCols(k0, k1 - k0), D.middleCols(x0 - S0, x1 - x0), false,
                             V.block(x0, k0, x1 - x0, k1 - k0), false, 1.0f, 1.0f);
            };
            for (Index S0 = 0; S0 < n; S0 += sbs) {
                const Index S1 = std::min(S0 + sbs, n);
                for (Index b0 = S0; b0 < S1; b0 += bs) {
                    const Index b1 = std::min(b0 + bs, S1);
                    for (Index s0 = b0; s0 < b1; s0 += sub) {
                        const Index s1 = std::min(s0 + sub, b1);
                        for (Index u0 = s0; u0 < s1; u0 += m) {
                            const Index u1 = std::min(u0 + m, s1);
                            if (st.dynamic_groups()) {
                                for (Index g0 = ((u0 + gs - 1) / gs) * gs; g0 < u1; g0 += gs) {
                                    const Index g1 = std::min(g0 + gs, n);
                                    // Current weights of the group: W plus the updates still
                                    // pending for column k, D[:, x:u0] V[x:u0, k] with x = s0 for
                                    // k in [s1, b1), b0 for k in [b1, S1), S0 for k >= S1.
                                    cur = W.middleCols(g0, g1 - g0);
                                    const auto pending = [&](Index x, Index k0, Index k1) {
                                        k0 = std::max(g0, k0);
                                        k1 = std::min(g1, k1);
                                        if (k1 > k0 && u0 > x)
                                            cur.middleCols(k0 - g0, k1 - k0).noalias() +=
                                                D.middleCols(x - S0, u0 - x) * V.block(x, k0, u0 - x, k1 - k0);
                                    };
                                    pending(s0, s1, b1);
                                    pending(b0, b1, S1);
                                    pending(S0, S1, n);
                                    if constexpr (!F::is_mx) st.ldl_group_state(g0, cur, t.r0);
                                    st.fit_group(cur, st.group_of(g0), t);
                                }
                            }
                            auto du = D.middleCols(u0 - S0, u1 - u0);
                            st.quantize_unit(u0, u1, du, t);
                            st.unscaled_errors(u0, u1, du, t);
                            if (s1 > u1) W.middleCols(u1, s1 - u1).noalias() += du * V.block(u0, u1, u1 - u0, s1 - u1);
                        }
                        if (b1 > s1) update(S0, s0, s1, s1, b1);
                    }
                    if (S1 > b1) update(S0, b0, b1, b1, S1);
                }
                if (n > S1) update(S0, S0, S1, S1, n);
            }
            losses[task] = t.loss;
        });
        for (double l : losses) st.add_loss(l);
        return st.finish();
    }

private:
    GptqOptions opt_;
    G gran_;
};

}  // namespace ptq
