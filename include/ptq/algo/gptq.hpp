#pragma once
// GPTQ: post-training quantization of a linear layer by sequential error compensation with
// the inverse Hessian of its calibration inputs, for every ptq format and granularity.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include <ptq/algo/detail/gptq_factor.hpp>
#include <ptq/algo/rtn.hpp>
#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/kernels.hpp>
#include <ptq/observe/clip_search.hpp>
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
    double mean_diag = 0.0;   ///< mean(diag H) after the dead-channel fix (H_ii = 0 -> 1)
    double damping = 0.0;     ///< lambda finally added to diag(H)
    int retries = 0;          ///< failed Cholesky attempts before the one that succeeded
    std::vector<std::size_t> dead_columns;  ///< input channels with H_ii = 0 (W[:, i] was zeroed)
    /// Layer-output loss on the calibration data, measured with the damped Hessian
    /// Hd = H + lambda I (dead H_ii set to 1 first), L(W^) = tr((W - W^) Hd (W - W^)^T)
    /// = 2/n ||X (W - W^)^T||^2 + lambda ||W - W^||^2 when H = 2/n X^T X.
    /// GPTQ: L = ||E||_F^2 exactly, E the matrix of scaled errors (W - W^ = E U, U^T U = Hd^-1),
    /// so it costs nothing. RTN (same format, granularity and QuantOptions; dead columns
    /// excluded): ||(W - W^_rtn) U^-1||_F^2 by one triangular solve; NaN if rtn_baseline is off.
    double loss_rtn = std::numeric_limits<double>::quiet_NaN();
    double loss_gptq = 0.0;
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
    std::vector<std::size_t> g_idx;         ///< per original column: its group index (column group of quantized.layout())
    GptqDiagnostics diagnostics;
};

/// Layer-output loss tr((W - W^) H (W - W^)^T) in double (= 2/n ||X (W - W^)^T||^2 for
/// H = 2/n X^T X). Costs rows * in^2 flops.
template <class DW, class DQ, class DH>
double output_error_proxy(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DQ>& w_hat,
                          const Eigen::MatrixBase<DH>& h) {
    if (w.rows() != w_hat.rows() || w.cols() != w_hat.cols())
        detail::throw_invalid("output_error_proxy", "w_hat", "shape differs from w");
    if (h.rows() != w.cols() || h.cols() != w.cols())
        detail::throw_invalid("output_error_proxy", "h", "must be in_features x in_features");
    const Eigen::MatrixXd d = w.template cast<double>() - w_hat.template cast<double>();
    return (d * h.template cast<double>()).cwiseProduct(d).sum();
}

namespace detail {

/// out = float(m), column-major. Row-major sources are copied in 64 x 64 tiles (a cache-blocked
/// transposition); column-major ones column by column.
template <class D>
void to_col_major(const Eigen::MatrixBase<D>& m, Eigen::MatrixXf& out) {
    out.resize(m.rows(), m.cols());
    if constexpr (bool(D::Flags & Eigen::RowMajorBit)) {
        constexpr Eigen::Index T = 64;
        for (Eigen::Index c0 = 0; c0 < m.cols(); c0 += T)
            for (Eigen::Index r0 = 0; r0 < m.rows(); r0 += T) {
                const Eigen::Index rt = std::min(T, m.rows() - r0), ct = std::min(T, m.cols() - c0);
                out.block(r0, c0, rt, ct) = m.block(r0, c0, rt, ct).template cast<float>();
            }
    } else {
        out = m.template cast<float>();
    }
}

/// In place: column k of the result = column src[k] of the input (src a permutation), by
/// following cycles with one column of scratch.
inline void permute_columns(Eigen::MatrixXf& m, const std::vector<std::size_t>& src) {
    std::vector<unsigned char> done(src.size(), 0);
    Eigen::VectorXf tmp;
    for (std::size_t k = 0; k < src.size(); ++k) {
        if (done[k] || src[k] == k) continue;
        tmp = m.col(Eigen::Index(k));
        std::size_t j = k;
        while (true) {
            done[j] = 1;
            const std::size_t from = src[j];
            if (from == k) {
                m.col(Eigen::Index(j)) = tmp;
                break;
            }
            m.col(Eigen::Index(j)) = m.col(Eigen::Index(from));
            j = from;
        }
    }
}

/// Which factor of the damped Hessian Hd (in processing order) GptqState computes.
///  - inverse: U upper with U^T U = Hd^-1 (the textbook form, as in the reference code; the
///    naive oracle uses it): E_B = (w_B - q_B) U_BB^-1, w_R -= E_B U_{B,R}.
///  - ldl: V = U^-1 (upper, V V^T = Hd: one Cholesky, no triangular inverse), stored as
///    Vt = V BD(V)^-1 off the diagonal unit blocks and V_BB on them (BD: the block diagonal of
///    the units). The same updates read w~_R = w_R + sum_{B<R} D_B Vt_{B,R} with D_B = w_B - q_B
///    the *unscaled* error against the original weights: since W - W^ = E U, E = (W - W^) V and
///    E (U - BD(U)) = (W - W^)(I - V BD(V)^-1) (the LDL form of GPTQ, "LDLQ" in QuIP).
enum class GptqFactor : std::uint8_t { inverse, ldl };

/// The state shared by the blocked GPTQ and its naive oracle: the working copy of W
/// (column-major, columns in processing order, so that the column loop reads contiguous
/// memory), the factor (see GptqFactor), the parameters and the codes.
template <QuantFormat F, class G>
class GptqState {
public:
    using Params = typename F::Params;
    using Index = Eigen::Index;

    GptqState(const GptqOptions& o, const G& gran, GptqFactor factor = GptqFactor::inverse)
        : opt_(o), gran_(gran), factor_(factor) {}

    /// Validates inputs, zeroes dead columns, permutes, factorises (with retries), fits static
    /// parameters. `fn` names the calling function in error messages.
    template <class DW, class DH>
    void prepare(const Eigen::MatrixBase<DW>& w_in, const Eigen::MatrixBase<DH>& h_in, const char* fn) {
        check_options(fn);
        rows_ = w_in.rows();
        n_ = w_in.cols();
        if (h_in.rows() != n_ || h_in.cols() != n_)
            throw_invalid(fn, "h", "is " + std::to_string(h_in.rows()) + "x" + std::to_string(h_in.cols()) +
                                       ", expected in_features x in_features = " + std::to_string(n_) + "x" +
                                       std::to_string(n_));
        const auto& h = h_in.derived().eval();  // no copy for a plain matrix
        to_col_major(w_in, W_);  // the working copy: column-major
        if (!W_.allFinite())
            for (Index c = 0; c < n_; ++c)
                for (Index r = 0; r < rows_; ++r)
                    if (!std::isfinite(W_(r, c)))
                        throw_non_finite(fn, "w", "row " + std::to_string(r) + ", column " + std::to_string(c));
        for (Index j = 0; j < n_; ++j)
            for (Index i = 0; i < n_; ++i)
                if (!std::isfinite(double(h(i, j))))
                    throw_non_finite(fn, "h", "entry (" + std::to_string(i) + ", " + std::to_string(j) + ")");

        layout_ = resolve_layout<F>(gran_, std::size_t(rows_), std::size_t(n_));
        grouped_ = is_per_group<G>::value;  // PerGroup<g>, and every MX format
        dynamic_groups_ = grouped_ && !opt_.static_groups;
        unit_ = 1;
        if constexpr (F::is_mx) unit_ = Index(opt_.mx_micro_block == 0 ? F::block : opt_.mx_micro_block);
        block_ = Index((opt_.block_size + std::size_t(unit_) - 1) / std::size_t(unit_)) * unit_;

        // Dead channels: H_ii = 0 -> H_ii = 1 and W[:, i] = 0.
        std::vector<double> diag(static_cast<std::size_t>(n_));
        dead_.assign(std::size_t(n_), 0);
        diag_.dead_columns.clear();
        for (Index i = 0; i < n_; ++i) {
            diag[std::size_t(i)] = double(h(i, i));
            if (diag[std::size_t(i)] == 0.0) {
                diag[std::size_t(i)] = 1.0;
                dead_[std::size_t(i)] = 1;
                diag_.dead_columns.push_back(std::size_t(i));
            }
        }
        // Processing order: identity, or descending diag(H) (stable: ties keep column order).
        perm_.resize(std::size_t(n_));
        std::iota(perm_.begin(), perm_.end(), std::size_t{0});
        if (opt_.act_order)
            std::stable_sort(perm_.begin(), perm_.end(),
                             [&](std::size_t a, std::size_t b) { return diag[a] > diag[b]; });
        inv_perm_.resize(std::size_t(n_));
        for (std::size_t k = 0; k < perm_.size(); ++k) inv_perm_[perm_[k]] = k;

        // Working W: dead columns zeroed; static parameters (per-tensor, per-channel, static
        // groups) are RTN's on these weights in the original column order; then the columns
        // are put in processing order.
        for (Index c = 0; c < n_; ++c)
            if (dead_[std::size_t(c)]) W_.col(c).setZero();
        params_.assign(layout_.num_groups(), Params{});
        if (!dynamic_groups_ && rows_ > 0 && n_ > 0) {
            const auto q = Rtn<F, G>(opt_.quant, gran_).quantize(W_, "w");
            std::copy(q.params().begin(), q.params().end(), params_.begin());
        }
        if (opt_.act_order) permute_columns(W_, perm_);
        col_params_.resize(std::size_t(rows_));
        col_group_ = std::numeric_limits<std::size_t>::max();

        // Damping with retries, then U (upper, U^T U = (P (H + lambda I) P^T)^-1).
        double sum = 0.0, sum_abs = 0.0;
        for (double d : diag) {
            sum += d;
            sum_abs += std::fabs(d);
        }
        const double nd = n_ > 0 ? double(n_) : 1.0;
        diag_.mean_diag = sum / nd;
        double scale = diag_.mean_diag;
        if (!(scale > 0.0)) scale = sum_abs > 0.0 ? sum_abs / nd : 1.0;
        double lambda = opt_.percdamp * scale;
        diag_.retries = 0;
        for (int attempt = 0;; ++attempt) {
            U_.resize(n_, n_);
            for (Index j = 0; j < n_; ++j) {
                const auto cj = Index(perm_[std::size_t(j)]);
                for (Index i = 0; i < n_; ++i) U_(i, j) = float(h(Index(perm_[std::size_t(i)]), cj));
                U_(j, j) = float(diag[std::size_t(cj)] + lambda);
            }
            if (factor_ == GptqFactor::ldl ? upper_cholesky_factor(U_) : upper_cholesky_of_inverse(U_)) break;
            if (attempt >= opt_.max_damping_retries)
                throw error(std::string("ptq::") + fn + ": argument 'h': H + lambda I is not positive definite even with lambda = " +
                            std::to_string(lambda) + " after " + std::to_string(attempt) + " damping retries");
            ++diag_.retries;
            lambda = (lambda > 0.0 ? lambda : 1e-6 * scale) * opt_.damping_growth;
        }
        diag_.damping = lambda;
        codes_.resize(std::size_t(rows_ * n_));
        loss_ = 0.0;
        if (opt_.rtn_baseline && rows_ > 0 && n_ > 0) diag_.loss_rtn = rtn_baseline_loss(w_in);
        if (factor_ == GptqFactor::ldl) {
            W0_ = W_;
            // Vt = V BD(V)^-1 above the diagonal unit blocks (which keep V_BB).
            for (Index u0 = unit_; u0 < n_; u0 += unit_) {
                const Index m = std::min(unit_, n_ - u0);
                auto above = U_.block(0, u0, u0, m);
                if (m == 1) above /= U_(u0, u0);
                else U_.block(u0, u0, m, m).template triangularView<Eigen::Upper>().template solveInPlace<Eigen::OnTheRight>(above);
            }
        }
    }

    Index rows() const noexcept { return rows_; }
    Index cols() const noexcept { return n_; }
    Index unit() const noexcept { return unit_; }
    Index block() const noexcept { return block_; }
    bool dynamic_groups() const noexcept { return dynamic_groups_; }
    Index group_size() const noexcept { return Index(layout_.group_cols); }
    Eigen::MatrixXf& W() noexcept { return W_; }
    /// The factor: U (GptqFactor::inverse) or Vt (GptqFactor::ldl).
    const Eigen::MatrixXf& factor() const noexcept { return U_; }

    /// Column group (in the storage layout) of processed column j.
    std::size_t group_of(Index j) const noexcept {
        if (layout_.whole_tensor || !grouped_) return 0;
        const std::size_t c = dynamic_groups_ ? std::size_t(j) : perm_[std::size_t(j)];
        return c / layout_.group_cols;
    }

    /// Fits the parameters of the dynamic group cg from its current weights `cur`
    /// (rows x group length, column-major), row by row with the RTN range + choose_params.
    void fit_group(const Eigen::Ref<const Eigen::MatrixXf>& cur, std::size_t cg) {
        const auto len = std::size_t(cur.cols());
        const std::size_t ncg = layout_.col_groups();
        if (opt_.quant.range == RangeMethod::min_max) {
            // Range of each row's group, swept column by column (vectorised over rows) with the
            // comparisons of RangeStats::add, in the same element order: identical to
            // kernel::range on the row. The weights are finite here (checked on entry).
            lo_ = cur.col(0);
            hi_ = lo_;
            for (Index k = 1; k < cur.cols(); ++k) {
                const auto x = cur.col(k).array();
                lo_ = (x < lo_.array()).select(x, lo_.array());
                hi_ = (x > hi_.array()).select(x, hi_.array());
            }
            if (!lo_.allFinite() || !hi_.allFinite()) throw_breakdown();
            for (Index r = 0; r < rows_; ++r) {
                RangeStats s;
                s.lo = lo_[r];
                s.hi = hi_[r];
                params_[std::size_t(r) * ncg + cg] = F::make_params(s, opt_.quant);
            }
        } else {
            tmp_row_ = cur;  // row-major copy: each row's group contiguous, as Rtn reads it
            for (Index r = 0; r < rows_; ++r) {
                const float* x = tmp_row_.data() + std::size_t(r) * len;
                const RangeStats s = kernel::range(x, len);
                if (s.non_finite) throw_breakdown();
                params_[std::size_t(r) * ncg + cg] = choose_params<F>(x, len, s, opt_.quant);
            }
        }
        col_group_ = std::numeric_limits<std::size_t>::max();  // refresh col_params_
    }

    /// Quantizes processed columns [u0, u1) in place (W_ then holds W^ there) and writes
    /// D = W_before - W^ (rows x (u1 - u0)).
    void quantize_unit(Index u0, Index u1, Eigen::Ref<Eigen::MatrixXf> d) {
        const std::size_t ncg = layout_.whole_tensor ? 0 : layout_.col_groups();
        const Rounding rnd = opt_.quant.rounding;
        for (Index j = u0; j < u1; ++j) {
            const std::size_t cg = group_of(j);
            if (cg != col_group_) {  // gather this column group's parameters, one per row
                for (Index r = 0; r < rows_; ++r)
                    col_params_[std::size_t(r)] = params_[layout_.whole_tensor ? 0 : std::size_t(r) * ncg + cg];
                col_group_ = cg;
            }
            float* w = W_.col(j).data();
            std::uint8_t* c = codes_.data() + std::size_t(j) * std::size_t(rows_);
            float* dj = d.col(j - u0).data();
            for (Index r = 0; r < rows_; ++r) {
                const Params& p = col_params_[std::size_t(r)];
                const std::uint8_t code = F::quantize(w[r], p, rnd);
                const float q = F::dequantize(code, p);
                c[r] = code;
                dj[r] = w[r] - q;
                w[r] = q;
            }
        }
    }

    /// E_unit = D * U[u0:u1, u0:u1]^-1 in place (D / U_jj for a single column); adds ||E||^2
    /// to the GPTQ loss.
    void scale_errors(Index u0, Index u1, Eigen::Ref<Eigen::MatrixXf> d) {
        if (u1 - u0 == 1) d.col(0) /= U_(u0, u0);
        else U_.block(u0, u0, u1 - u0, u1 - u0).triangularView<Eigen::Upper>().template solveInPlace<Eigen::OnTheRight>(d);
        loss_ += double(d.squaredNorm());
    }

    /// GptqFactor::ldl: on entry D = w~_B - q_B (from quantize_unit); adds ||E_B||^2 to the
    /// loss, E_B = D V_BB (the scaled errors of the inverse form); on exit D = w_B - q_B, the
    /// error against the original weights that the ldl updates propagate.
    void unscaled_errors(Index u0, Index u1, Eigen::Ref<Eigen::MatrixXf> d) {
        if (u1 - u0 == 1) loss_ += double((d.col(0) * U_(u0, u0)).squaredNorm());
        else loss_ += double((d * U_.block(u0, u0, u1 - u0, u1 - u0).triangularView<Eigen::Upper>()).squaredNorm());
        d = W0_.middleCols(u0, u1 - u0) - W_.middleCols(u0, u1 - u0);
    }

    /// GptqFactor::ldl with single-column units: turns `cur`, the weights of the group that
    /// starts at processed column g0 in their LDL form (every update of the columns before g0
    /// applied), W0_G + D_P V_PG diag(V_GG)^-1, into the weights the textbook U form holds at
    /// that point, W0_G + D_P V_PG V_GG^-1 (P = the columns before g0; both are the OBS-optimal
    /// W0_G + D_P Hd_PG Hd_GG^-1 only in the U form), by one triangular solve:
    ///   cur = W0_G + (cur - W0_G) Vt_GG^-1,   Vt_GG = V_GG diag(V_GG)^-1 (unit upper).
    /// The two forms agree on every column when it is quantized, but not on the later columns
    /// of a group when its parameters are fitted. (MX units contain their groups: nothing to
    /// do there.) Cost rows * len^2 flops per group.
    void ldl_group_state(Index g0, Eigen::MatrixXf& cur) const {
        const Index len = cur.cols();
        cur -= W0_.middleCols(g0, len);
        U_.block(g0, g0, len, len).template triangularView<Eigen::UnitUpper>().template solveInPlace<Eigen::OnTheRight>(cur);
        cur += W0_.middleCols(g0, len);
    }

    /// Packs the result (codes, params, dequantized matrix, permutation, diagnostics).
    GptqResult<F> finish() {
        GptqResult<F> res;
        if (!W_.allFinite()) throw_breakdown();
        W0_.resize(0, 0);
        res.permuted_storage = dynamic_groups_ && opt_.act_order;
        res.perm = perm_;
        res.storage_perm.resize(std::size_t(n_));
        if (res.permuted_storage) res.storage_perm = perm_;
        else std::iota(res.storage_perm.begin(), res.storage_perm.end(), std::size_t{0});
        res.g_idx.resize(std::size_t(n_));
        for (std::size_t c = 0; c < std::size_t(n_); ++c) {
            std::size_t g = 0;
            if (grouped_) g = (res.permuted_storage ? inv_perm_[c] : c) / layout_.group_cols;
            res.g_idx[c] = g;
        }
        // Codes: processing order column-major -> storage order, packed row by row.
        res.quantized = QuantizedMatrix<F>(layout_);
        std::copy(params_.begin(), params_.end(), res.quantized.params().begin());
        // 64 rows at a time: one 64-byte run of each processed column, packed per row.
        constexpr Index T = 64;
        std::vector<std::uint8_t> rowbuf(std::size_t(T) * std::size_t(n_));
        for (Index r0 = 0; r0 < rows_; r0 += T) {
            const Index rt = std::min(T, rows_ - r0);
            for (std::size_t k = 0; k < std::size_t(n_); ++k) {
                const std::size_t j = res.permuted_storage ? k : inv_perm_[k];  // processed column of storage column k
                const std::uint8_t* src = codes_.data() + j * std::size_t(rows_) + std::size_t(r0);
                for (Index i = 0; i < rt; ++i) rowbuf[std::size_t(i) * std::size_t(n_) + k] = src[i];
            }
            for (Index i = 0; i < rt; ++i)
                kernel::pack_bits(rowbuf.data() + std::size_t(i) * std::size_t(n_), std::size_t(n_), F::bits,
                                  res.quantized.row_data(r0 + i));
        }
        std::vector<std::uint8_t>().swap(codes_);
        // Dequantized matrix in the original order (W_ holds W^ in processing order).
        if (opt_.act_order) permute_columns(W_, inv_perm_);
        res.dequantized.resize(rows_, n_);
        for (Index r0 = 0; r0 < rows_; r0 += T)
            for (Index c0 = 0; c0 < n_; c0 += T) {
                const Index rt = std::min(T, rows_ - r0), ct = std::min(T, n_ - c0);
                res.dequantized.block(r0, c0, rt, ct) = W_.block(r0, c0, rt, ct);
            }
        W_.resize(0, 0);
        diag_.loss_gptq = loss_;
        U_.resize(0, 0);
        res.diagnostics = diag_;
        return res;
    }

private:
    /// The damped loss of RTN (same format, granularity and options; dead columns excluded),
    /// computed right after the factorisation: with Delta = W - W^_rtn in processing order,
    /// ||Delta U^-1||^2 (GptqFactor::inverse: a triangular solve) or ||Delta V||^2
    /// (GptqFactor::ldl, before U_ is turned into Vt: a triangular product), 256 rows at a time.
    template <class DW>
    double rtn_baseline_loss(const Eigen::MatrixBase<DW>& w_in) const {
        Eigen::MatrixXf delta;
        {
            // (Rtn's own row-major copy of w is gone before delta exists: peak 2 rows x in.)
            const RowMatrixXf rq = dequantize(Rtn<F, G>(opt_.quant, gran_).quantize(w_in, "w"));
            to_col_major(w_in, delta);
            delta -= rq;
        }
        for (Index c = 0; c < n_; ++c)
            if (dead_[std::size_t(c)]) delta.col(c).setZero();
        if (opt_.act_order) permute_columns(delta, perm_);
        Eigen::MatrixXf t;
        double loss = 0.0;
        for (Index r0 = 0; r0 < rows_; r0 += 256) {
            const auto rows = delta.middleRows(r0, std::min<Index>(256, rows_ - r0));
            if (factor_ == GptqFactor::ldl) {
                t.noalias() = rows * U_.triangularView<Eigen::Upper>();
            } else {
                t = rows;
                U_.triangularView<Eigen::Upper>().template solveInPlace<Eigen::OnTheRight>(t);
            }
            loss += t.cast<double>().squaredNorm();
        }
        return loss;
    }

    void check_options(const char* fn) const {
        if (!(opt_.percdamp >= 0.0) || !std::isfinite(opt_.percdamp))
            throw_invalid(fn, "options.percdamp", "must be finite and >= 0");
        if (opt_.block_size == 0) throw_invalid(fn, "options.block_size", "must be >= 1");
        if (opt_.max_damping_retries < 0) throw_invalid(fn, "options.max_damping_retries", "must be >= 0");
        if (!(opt_.damping_growth > 1.0) || !std::isfinite(opt_.damping_growth))
            throw_invalid(fn, "options.damping_growth", "must be finite and > 1");
        if constexpr (F::is_mx) {
            if (opt_.mx_micro_block % F::block != 0)
                throw_invalid(fn, "options.mx_micro_block",
                              "must be a multiple of the MX block " + std::to_string(F::block) + " (or 0)");
        }
        if (opt_.quant.range == RangeMethod::mse_search) check_clip(opt_.quant.clip);
    }
    [[noreturn]] static void throw_breakdown() {
        throw error("ptq::Gptq::quantize: numerical breakdown (non-finite weights during error propagation)");
    }

    GptqOptions opt_;
    G gran_;
    GptqFactor factor_ = GptqFactor::inverse;
    Index rows_ = 0, n_ = 0, unit_ = 1, block_ = 128;
    GroupLayout layout_{};
    bool grouped_ = false, dynamic_groups_ = false;
    std::vector<unsigned char> dead_;
    std::vector<std::size_t> perm_, inv_perm_;
    Eigen::MatrixXf W_, U_;
    Eigen::MatrixXf W0_;  // GptqFactor::ldl: the weights before quantization (processing order)
    RowMatrixXf tmp_row_;
    Eigen::VectorXf lo_, hi_;
    std::vector<Params> params_, col_params_;  // col_params_: parameters of column group col_group_, per row
    std::size_t col_group_ = 0;
    std::vector<std::uint8_t> codes_;  // column-major, processing order
    double loss_ = 0.0;
    GptqDiagnostics diag_;
};

}  // namespace detail

/// GPTQ quantizer of format F at granularity G (Eigen-decomposition style: options in the
/// constructor, quantize(W, H) to run). G is PerTensor, PerChannel or PerGroup<g> (MX formats:
/// their block, the default).
///
/// Maths (Frantar et al. 2022; DESIGN §6). W is [out x in], H = 2/n sum x^T x [in x in]
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
template <QuantFormat F, class G = default_granularity_t<F>>
class Gptq {
    static_assert(!std::is_same_v<G, PerToken>, "ptq::Gptq: PerToken is an activation granularity; use PerChannel for weights");

public:
    explicit Gptq(const GptqOptions& options = {}, const G& granularity = {}) : opt_(options), gran_(granularity) {
        check_granularity<F, G>();
    }
    const GptqOptions& options() const noexcept { return opt_; }
    const G& granularity() const noexcept { return gran_; }

    /// Quantizes W [out x in] (any dense Eigen expression) given the Hessian H [in x in].
    template <class DW, class DH>
    GptqResult<F> quantize(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DH>& h) const {
        using Index = Eigen::Index;
        detail::GptqState<F, G> st(opt_, gran_, detail::GptqFactor::ldl);
        st.prepare(w, h, "Gptq::quantize");
        const Index rows = st.rows(), n = st.cols(), m = st.unit(), bs = st.block();
        const Index sub = F::is_mx ? m : std::min<Index>(16, bs);  // eager sub-block
        const Index sbs = std::max<Index>(bs, ((512 + bs - 1) / bs) * bs);  // super-block
        Eigen::MatrixXf& W = st.W();
        const Eigen::MatrixXf& V = st.factor();  // Vt (GptqFactor::ldl)
        Eigen::MatrixXf D(rows, std::min(sbs, n));  // errors w0_B - q_B of the current super-block
        Eigen::MatrixXf cur;
        const Index gs = st.group_size();
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
                                // Current weights of the group: W plus the updates still pending
                                // for column k, D[:, x:u0] V[x:u0, k] with x = s0 for k in
                                // [s1, b1), b0 for k in [b1, S1), S0 for k >= S1.
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
                                if constexpr (!F::is_mx) st.ldl_group_state(g0, cur);
                                st.fit_group(cur, st.group_of(g0));
                            }
                        }
                        auto du = D.middleCols(u0 - S0, u1 - u0);
                        st.quantize_unit(u0, u1, du);
                        st.unscaled_errors(u0, u1, du);
                        if (s1 > u1) W.middleCols(u1, s1 - u1).noalias() += du * V.block(u0, u1, u1 - u0, s1 - u1);
                    }
                    if (b1 > s1)
                        W.middleCols(s1, b1 - s1).noalias() +=
                            D.middleCols(s0 - S0, s1 - s0) * V.block(s0, s1, s1 - s0, b1 - s1);
                }
                if (S1 > b1)
                    W.middleCols(b1, S1 - b1).noalias() += D.middleCols(b0 - S0, b1 - b0) * V.block(b0, b1, b1 - b0, S1 - b1);
            }
            if (n > S1) W.rightCols(n - S1).noalias() += D.leftCols(S1 - S0) * V.block(S0, S1, S1 - S0, n - S1);
        }
        return st.finish();
    }

private:
    GptqOptions opt_;
    G gran_;
};

/// The naive column-by-column GPTQ (the test oracle): the same maths as Gptq (same
/// preparation, factor, units and parameter fitting), but every unit's error is propagated
/// immediately to all later columns, w_R -= E_B U_{B,R}, with no blocks and no lazy batch.
/// block_size is ignored. O(rows * in^2) memory traffic per column: small layers only.
template <QuantFormat F, class G = default_granularity_t<F>, class DW, class DH>
GptqResult<F> gptq_naive(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DH>& h, const GptqOptions& options = {},
                         const G& granularity = {}) {
    using Index = Eigen::Index;
    check_granularity<F, G>();
    detail::GptqState<F, G> st(options, granularity);
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
