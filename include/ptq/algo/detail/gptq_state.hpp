#pragma once
// Internals of GPTQ: the state machine shared by the blocked Gptq and its naive oracle
// (preparation, parameter fitting, unit quantization, error scaling, result packing).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/algo/detail/gptq_factor.hpp>
#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/kernels.hpp>
#include <ptq/parallel.hpp>
#include <ptq/observe/clip_search.hpp>
#include <ptq/quantize.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq::detail {

/// Which factor of the damped Hessian Hd (in processing order) GptqState computes.
///  - inverse: U upper with U^T U = Hd^-1 (the textbook form, as in the reference code; the
///    naive oracle uses it): E_B = (w_B - q_B) U_BB^-1, w_R -= E_B U_{B,R}.
///  - ldl: V = U^-1 (upper, V V^T = Hd: one Cholesky, no triangular inverse), stored as
///    Vt = V BD(V)^-1 off the diagonal unit blocks and V_BB on them (BD: the block diagonal of
///    the units). The same updates read w~_R = w_R + sum_{B<R} D_B Vt_{B,R} with D_B = w_B - q_B
///    the *unscaled* error against the original weights: since W - W^ = E U, E = (W - W^) V and
///    E (U - BD(U)) = (W - W^)(I - V BD(V)^-1) (the LDL form of GPTQ, "LDLQ" in QuIP).
enum class GptqFactor : std::uint8_t { inverse, ldl };

/// Checks GptqOptions (named as `fn`'s argument 'options.<field>').
template <QuantFormat F, class Options>
void check_gptq_options(const Options& o, const char* fn) {
    if (!(o.percdamp >= 0.0) || !std::isfinite(o.percdamp))
        throw_invalid(fn, "options.percdamp", "must be finite and >= 0");
    if (o.block_size == 0) throw_invalid(fn, "options.block_size", "must be >= 1");
    if (o.max_damping_retries < 0) throw_invalid(fn, "options.max_damping_retries", "must be >= 0");
    if (!(o.damping_growth > 1.0) || !std::isfinite(o.damping_growth))
        throw_invalid(fn, "options.damping_growth", "must be finite and > 1");
    if constexpr (F::is_mx) {
        if (o.mx_micro_block % F::block != 0)
            throw_invalid(fn, "options.mx_micro_block",
                          "must be a multiple of the MX block " + std::to_string(F::block) + " (or 0)");
    }
    check_quant_options(o.quant, fn, "options.quant");
}

/// The state shared by the blocked GPTQ (algo/gptq.hpp) and its naive oracle
/// (algo/gptq_naive.hpp): the working copy of W (column-major, columns in processing order,
/// so that the column loop reads contiguous memory), the factor (see GptqFactor), the
/// parameters and the codes. Options = GptqOptions and Result = GptqResult<F> (template
/// parameters so that this header does not depend on the public one); the options must
/// have passed check_gptq_options. Arch: the SIMD architecture of the kernels.
template <QuantFormat F, class G, class Options, class Result, class Arch>
class GptqState {
public:
    using Params = typename F::Params;
    using Index = Eigen::Index;
    using Diagnostics = decltype(Result::diagnostics);

    GptqState(const Options& o, const G& gran, GptqFactor factor = GptqFactor::inverse)
        : opt_(o), gran_(gran), factor_(factor) {}

    /// The rows [r0, r0 + nr) that one task of the column loop owns, with that task's scratch:
    /// rows are independent in GPTQ (every update is row by row), so the blocked loop runs on
    /// fixed row blocks in parallel; the loss is summed per task and the tasks' sums in task
    /// order (add_loss), so the result does not depend on the thread count.
    struct RowTask {
        Index r0 = 0, nr = 0;
        std::vector<Params> col_params;  // parameters of column group col_group, per row of the task
        std::size_t col_group = std::numeric_limits<std::size_t>::max();
        RowMatrixXf tmp_row;
        double loss = 0.0;
    };
    /// A task over rows [r0, r0 + nr).
    RowTask row_task(Index r0, Index nr) const {
        RowTask t;
        t.r0 = r0;
        t.nr = nr;
        t.col_params.resize(std::size_t(nr));
        return t;
    }
    /// Adds a task's loss to the GPTQ loss.
    void add_loss(double l) noexcept { loss_ += l; }

    /// Everything before the column loop, in seven steps (below). `fn` names the calling
    /// function in error messages.
    template <class DW, class DH>
    void prepare(const Eigen::MatrixBase<DW>& w_in, const Eigen::MatrixBase<DH>& h_in, const char* fn) {
        const auto& h = h_in.derived().eval();  // no copy for a plain matrix
        validate_and_copy(w_in, h, fn);
        const std::vector<double> diag = mark_dead_channels(h);
        choose_order(diag);
        fit_static_params();
        damp_and_factorise(h, diag, fn);
        codes_.resize(std::size_t(rows_ * n_));
        loss_ = 0.0;
        if (opt_.rtn_baseline && rows_ > 0 && n_ > 0) diag_.damped_loss_rtn = rtn_baseline_loss(w_in);
        if (factor_ == GptqFactor::ldl) to_ldl_updates();
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
        if (!grouped_) return 0;
        const std::size_t c = dynamic_groups_ ? std::size_t(j) : perm_[std::size_t(j)];
        return c / layout_.group_cols;
    }

    /// Fits the parameters of the dynamic group cg from its current weights `cur`
    /// (rows x group length, column-major): per row, the RTN range + choose_params.
    void fit_group(const Eigen::Ref<const Eigen::MatrixXf>& cur, std::size_t cg) { fit_group(cur, cg, all_rows()); }
    /// The same for the rows of task t (cur: t.nr rows).
    void fit_group(const Eigen::Ref<const Eigen::MatrixXf>& cur, std::size_t cg, RowTask& t) {
        t.tmp_row = cur;  // row-major copy: each row's group contiguous, as quantize reads it
        const std::size_t ncg = layout_.col_groups();
        for_each_group(PerChannel{}.layout(std::size_t(t.nr), std::size_t(cur.cols())),
                       [&](std::size_t r, std::size_t, std::size_t off, std::size_t n) {
                           const float* x = t.tmp_row.data() + off;
                           const RangeStats s = kernel::range<Arch>(x, n);
                           if (s.non_finite) throw_breakdown();
                           params_[(std::size_t(t.r0) + r) * ncg + cg] = choose_params<F>(x, n, s, opt_.quant);
                       });
        t.col_group = std::numeric_limits<std::size_t>::max();  // refresh t.col_params
    }

    /// Quantizes processed columns [u0, u1) in place (W_ then holds W^ there) and writes
    /// D = W_before - W^ (rows x (u1 - u0)).
    void quantize_unit(Index u0, Index u1, Eigen::Ref<Eigen::MatrixXf> d) { quantize_unit(u0, u1, d, all_rows()); }
    /// The same for the rows of task t (d: t.nr rows).
    void quantize_unit(Index u0, Index u1, Eigen::Ref<Eigen::MatrixXf> d, RowTask& t) {
        const std::size_t ncg = layout_.col_groups();
        const Rounding rnd = opt_.quant.rounding;
        for (Index j = u0; j < u1; ++j) {
            const std::size_t cg = group_of(j);
            if (cg != t.col_group) {  // gather this column group's parameters, one per row
                for (Index r = 0; r < t.nr; ++r)
                    t.col_params[std::size_t(r)] = params_[layout_.row_group(std::size_t(t.r0 + r)) * ncg + cg];
                t.col_group = cg;
            }
            float* w = W_.col(j).data() + t.r0;
            std::uint8_t* c = codes_.data() + std::size_t(j) * std::size_t(rows_) + std::size_t(t.r0);
            float* dj = d.col(j - u0).data();
            for (Index r = 0; r < t.nr; ++r) {
                const Params& p = t.col_params[std::size_t(r)];
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
        else
            U_.block(u0, u0, u1 - u0, u1 - u0)
                .triangularView<Eigen::Upper>()
                .template solveInPlace<Eigen::OnTheRight>(d);
        loss_ += double(d.squaredNorm());
    }

    /// GptqFactor::ldl: on entry D = w~_B - q_B (from quantize_unit); adds ||E_B||^2 to the
    /// loss, E_B = D V_BB (the scaled errors of the inverse form); on exit D = w_B - q_B, the
    /// error against the original weights that the ldl updates propagate.
    void unscaled_errors(Index u0, Index u1, Eigen::Ref<Eigen::MatrixXf> d) { unscaled_errors(u0, u1, d, all_rows()); }
    /// The same for the rows of task t (its loss goes to t.loss).
    void unscaled_errors(Index u0, Index u1, Eigen::Ref<Eigen::MatrixXf> d, RowTask& t) {
        if (u1 - u0 == 1) t.loss += double((d.col(0) * U_(u0, u0)).squaredNorm());
        else t.loss += double((d * U_.block(u0, u0, u1 - u0, u1 - u0).triangularView<Eigen::Upper>()).squaredNorm());
        d = W0_.block(t.r0, u0, t.nr, u1 - u0) - W_.block(t.r0, u0, t.nr, u1 - u0);
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
    /// cur holds rows [r0, r0 + cur.rows()).
    void ldl_group_state(Index g0, Eigen::MatrixXf& cur, Index r0 = 0) const {
        const Index len = cur.cols();
        cur -= W0_.block(r0, g0, cur.rows(), len);
        U_.block(g0, g0, len, len)
            .template triangularView<Eigen::UnitUpper>()
            .template solveInPlace<Eigen::OnTheRight>(cur);
        cur += W0_.block(r0, g0, cur.rows(), len);
    }

    /// Packs the result (codes, params, dequantized matrix, permutation, diagnostics).
    Result finish() {
        Result res;
        if (!detail::all_finite(W_)) throw_breakdown();
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
        // 64 rows at a time (in parallel): one 64-byte run of each processed column, packed per row.
        constexpr Index T = 64;
        const auto row_tiles = std::size_t((rows_ + T - 1) / T);
        parallel_for(row_tiles, [&](std::size_t tile) {
            std::vector<std::uint8_t> rowbuf(std::size_t(T) * std::size_t(n_));
            const Index r0 = Index(tile) * T, rt = std::min(T, rows_ - r0);
            for (std::size_t k = 0; k < std::size_t(n_); ++k) {
                const std::size_t j = res.permuted_storage ? k : inv_perm_[k];  // processed column of storage column k
                const std::uint8_t* src = codes_.data() + j * std::size_t(rows_) + std::size_t(r0);
                for (Index i = 0; i < rt; ++i) rowbuf[std::size_t(i) * std::size_t(n_) + k] = src[i];
            }
            for (Index i = 0; i < rt; ++i)
                kernel::pack_bits<Arch>(rowbuf.data() + std::size_t(i) * std::size_t(n_), std::size_t(n_), F::bits,
                                        res.quantized.row_data(r0 + i));
        });
        std::vector<std::uint8_t>().swap(codes_);
        // Dequantized matrix in the original order (W_ holds W^ in processing order).
        if (opt_.act_order) permute_columns(W_, inv_perm_);
        res.dequantized.resize(rows_, n_);
        parallel_for(row_tiles, [&](std::size_t tile) {
            const Index r0 = Index(tile) * T, rt = std::min(T, rows_ - r0);
            for (Index c0 = 0; c0 < n_; c0 += T) {
                const Index ct = std::min(T, n_ - c0);
                res.dequantized.block(r0, c0, rt, ct) = W_.block(r0, c0, rt, ct);
            }
        });
        W_.resize(0, 0);
        diag_.damped_loss = loss_ + whole_.loss;
        U_.resize(0, 0);
        res.diagnostics = diag_;
        return res;
    }

private:
    // 1. Validation: H's shape, NaN/Inf in W and H; W_ = the column-major working copy of W;
    //    the layout, the unit (1 column, or the MX micro-block) and the block size.
    template <class DW, class DH>
    void validate_and_copy(const Eigen::MatrixBase<DW>& w_in, const DH& h, const char* fn) {
        rows_ = w_in.rows();
        n_ = w_in.cols();
        if (h.rows() != n_ || h.cols() != n_)
            throw_invalid(fn, "h",
                          "is " + std::to_string(h.rows()) + "x" + std::to_string(h.cols()) +
                              ", expected in_features x in_features = " + std::to_string(n_) + "x" +
                              std::to_string(n_));
        to_col_major(w_in, W_);
        if (!detail::all_finite(W_))
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
    }

    // 2. Dead channels: H_ii = 0 -> H_ii = 1 (in the returned diagonal) and W[:, i] = 0.
    template <class DH>
    std::vector<double> mark_dead_channels(const DH& h) {
        std::vector<double> diag(static_cast<std::size_t>(n_));
        dead_.assign(std::size_t(n_), 0);
        diag_.dead_columns.clear();
        for (Index i = 0; i < n_; ++i) {
            diag[std::size_t(i)] = double(h(i, i));
            if (diag[std::size_t(i)] == 0.0) {
                diag[std::size_t(i)] = 1.0;
                dead_[std::size_t(i)] = 1;
                diag_.dead_columns.push_back(std::size_t(i));
                W_.col(i).setZero();
            }
        }
        return diag;
    }

    // 3. Processing order: identity, or descending diag(H) (stable: ties keep column order).
    void choose_order(const std::vector<double>& diag) {
        perm_.resize(std::size_t(n_));
        std::iota(perm_.begin(), perm_.end(), std::size_t{0});
        if (opt_.act_order)
            std::stable_sort(perm_.begin(), perm_.end(),
                             [&](std::size_t a, std::size_t b) { return diag[a] > diag[b]; });
        inv_perm_.resize(std::size_t(n_));
        for (std::size_t k = 0; k < perm_.size(); ++k) inv_perm_[perm_[k]] = k;
    }

    // 4. Static parameters (per-tensor, per-channel, static groups): RTN's on the weights with
    //    dead columns zeroed, in the original column order; then the columns of W_ are put in
    //    processing order.
    void fit_static_params() {
        params_.assign(layout_.num_groups(), Params{});
        if (!dynamic_groups_ && rows_ > 0 && n_ > 0) {
            const auto q = quantize<F, G, Arch>(W_, opt_.quant, gran_);
            std::copy(q.params().begin(), q.params().end(), params_.begin());
        }
        if (opt_.act_order) permute_columns(W_, perm_);
        whole_ = row_task(0, rows_);
    }

    // 5. Damping with retries: lambda = percdamp * mean(diag H) (or mean |diag H|, or 1), times
    //    damping_growth after every failed factorisation (step 7), at most max_damping_retries times.
    template <class DH>
    void damp_and_factorise(const DH& h, const std::vector<double>& diag, const char* fn) {
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
            if (factorise(h, diag, lambda)) break;
            if (attempt >= opt_.max_damping_retries)
                throw error(std::string("ptq::") + fn +
                            ": argument 'h': H + lambda I is not positive definite even with lambda = " +
                            std::to_string(lambda) + " after " + std::to_string(attempt) + " damping retries");
            ++diag_.retries;
            lambda = (lambda > 0.0 ? lambda : 1e-6 * scale) * opt_.damping_growth;
        }
        diag_.damping = lambda;
    }

    // 7. The factor of Hd = P (H + lambda I) P^T in U_ (U with U^T U = Hd^-1, or V = U^-1 for
    //    GptqFactor::ldl); false if Hd is not numerically positive definite.
    template <class DH>
    bool factorise(const DH& h, const std::vector<double>& diag, double lambda) {
        U_.resize(n_, n_);
        for (Index j = 0; j < n_; ++j) {
            const auto cj = Index(perm_[std::size_t(j)]);
            for (Index i = 0; i < n_; ++i) U_(i, j) = float(h(Index(perm_[std::size_t(i)]), cj));
            U_(j, j) = float(diag[std::size_t(cj)] + lambda);
        }
        return factor_ == GptqFactor::ldl ? upper_cholesky_factor(U_) : upper_cholesky_of_inverse(U_);
    }

    // GptqFactor::ldl, after step 6: keeps the original weights W0_ and turns V into
    // Vt = V BD(V)^-1 above the diagonal unit blocks (which keep V_BB).
    void to_ldl_updates() {
        W0_ = W_;
        for (Index u0 = unit_; u0 < n_; u0 += unit_) {
            const Index m = std::min(unit_, n_ - u0);
            auto above = U_.block(0, u0, u0, m);
            if (m == 1) above /= U_(u0, u0);
            else
                U_.block(u0, u0, m, m)
                    .template triangularView<Eigen::Upper>()
                    .template solveInPlace<Eigen::OnTheRight>(above);
        }
    }

    // 6. RTN baseline: the damped loss of RTN (same format, granularity and options; dead columns excluded),
    /// computed right after the factorisation: with Delta = W - W^_rtn in processing order,
    /// ||Delta U^-1||^2 (GptqFactor::inverse: a triangular solve) or ||Delta V||^2
    /// (GptqFactor::ldl, before U_ is turned into Vt: a triangular product), 256 rows at a time.
    template <class DW>
    double rtn_baseline_loss(const Eigen::MatrixBase<DW>& w_in) const {
        Eigen::MatrixXf delta;
        {
            // (Rtn's own row-major copy of w is gone before delta exists: peak 2 rows x in.)
            const RowMatrixXf rq = fake_quantize<F, G, Arch>(w_in, opt_.quant, gran_);
            to_col_major(w_in, delta);
            delta -= rq;
        }
        for (Index c = 0; c < n_; ++c)
            if (dead_[std::size_t(c)]) delta.col(c).setZero();
        if (opt_.act_order) permute_columns(delta, perm_);
        // 256-row chunks in parallel, their losses summed in chunk order.
        std::vector<double> part(std::size_t((rows_ + 255) / 256));
        parallel_for(part.size(), [&](std::size_t k) {
            const Index r0 = Index(k) * 256;
            const auto rows = delta.middleRows(r0, std::min<Index>(256, rows_ - r0));
            Eigen::MatrixXf t;
            if (factor_ == GptqFactor::ldl) {
                t.noalias() = rows * U_.triangularView<Eigen::Upper>();
            } else {
                t = rows;
                U_.triangularView<Eigen::Upper>().template solveInPlace<Eigen::OnTheRight>(t);
            }
            part[k] = t.cast<double>().squaredNorm();
        });
        double loss = 0.0;
        for (double l : part) loss += l;
        return loss;
    }

    RowTask& all_rows() noexcept { return whole_; }

    [[noreturn]] static void throw_breakdown() {
        throw error("ptq::Gptq::quantize: numerical breakdown (non-finite weights during error propagation)");
    }

    Options opt_;
    G gran_;
    GptqFactor factor_ = GptqFactor::inverse;
    Index rows_ = 0, n_ = 0, unit_ = 1, block_ = 128;
    GroupLayout layout_{};
    bool grouped_ = false, dynamic_groups_ = false;
    std::vector<unsigned char> dead_;
    std::vector<std::size_t> perm_, inv_perm_;
    Eigen::MatrixXf W_, U_;
    Eigen::MatrixXf W0_;  // GptqFactor::ldl: the weights before quantization (processing order)
    std::vector<Params> params_;
    RowTask whole_;                    // the task of all rows (the calls without a RowTask)
    std::vector<std::uint8_t> codes_;  // column-major, processing order
    double loss_ = 0.0;
    Diagnostics diag_;
};

}  // namespace ptq::detail
