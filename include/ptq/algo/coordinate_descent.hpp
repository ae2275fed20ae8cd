#pragma once
// Coordinate descent over the quantization grid after GPTQ (QuantEase-style rounding refinement).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/algo/gptq.hpp>
#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/format/scale_storage.hpp>
#include <ptq/kernel/packing.hpp>
#include <ptq/quantize.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

/// Options of refine_rounding. Plain struct; defaults documented.
struct RefineOptions {
    int passes = 2;  ///< sweeps over all columns (0: no change); stops early after a pass without change
    /// After each sweep, refit every row's group scales (IntFormat; IntMinFormat: scales and
    /// minima) to the codes by least squares on the same objective (docs/DESIGN.md §12.6).
    /// Needs one parameter set per row (not PerTensor); other formats: ptq::invalid_argument.
    bool refit_scales = false;
    /// Storage type the refitted scales (and minima) are rounded to, as the model file holds
    /// them (format/options.hpp). The pipeline sets it from its quantizer's QuantOptions.
    ScaleStorage scale_storage = ScaleStorage::f32;
};

/// Result of refine_rounding.
template <QuantFormat F>
struct RefineResult {
    QuantizedMatrix<F> quantized;  ///< the refined codes, same layout, column order and parameters as the input
    RowMatrixXf dequantized;       ///< W^ in the original column order
    /// tr((W - W^) H (W - W^)^T) in double (output_error_proxy): [0] before, [k] after pass k.
    std::vector<double> objective;
    std::size_t changed = 0;   ///< codes changed, summed over the passes
    std::size_t refitted = 0;  ///< rows whose parameters were refitted, summed over the passes
};

namespace detail {
inline void check_refine_options(const RefineOptions& o, const char* fn = "refine_rounding",
                                 const char* arg = "options") {
    if (o.passes < 0) throw_invalid(fn, std::string(arg) + ".passes", "must be >= 0");
}

/// The refit of one row's group parameters (RefineOptions::refit_scales). With the codes c_j
/// and, for IntFormat, the zero points z_g fixed, the dequantized row is linear in the
/// parameters x: IntFormat w^_j = s_g (c_j - z_g) (one unknown per group), IntMinFormat
/// w^_j = s_g c_j + m_g (two). Writing w^ = B x (B: in x unknowns, storage order), the row
/// objective (w - B x)^T H (w - B x) is minimised by (B^T H B + lambda I) x = B^T H w +
/// lambda x_old, solved in double by LDLT; lambda = 1e-12 * trace(B^T H B) / unknowns + 1e-300
/// keeps a group whose codes all equal its zero point (or whose inputs are dead) at its old
/// parameters. Each solved value is rounded to `st` (RNE, to_stored_scale: clamped to the
/// storage type's positive range; minima with round_to_storage). The caller accepts the new
/// parameters only if the row objective, recomputed from the float dequantized values, drops.
/// Returns false (parameters unusable: non-finite or non-positive scale) without touching p.
template <QuantFormat F>
bool refit_row_params(const Eigen::MatrixXd& hs, const Eigen::VectorXd& hw, const std::uint8_t* packed,
                      const GroupLayout& lay, ScaleStorage st, const typename F::Params* old, typename F::Params* p) {
    constexpr int per = F::kind == FormatKind::integer_min ? 2 : 1;
    const std::size_t cols = lay.cols, ng = lay.col_groups(), nv = ng * per;
    // e(j, k): value of basis k (0: scale, 1: minimum) at storage column j.
    std::vector<double> e(cols * per);
    for (std::size_t j = 0; j < cols; ++j) {
        const double c = double(ref::get_code(packed, j, F::bits));
        const auto& q = old[j / lay.group_cols];
        if constexpr (per == 2) {
            e[j * 2] = c;
            e[j * 2 + 1] = 1.0;
        } else {
            e[j] = c - double(q.zero);
        }
    }
    Eigen::MatrixXd m = Eigen::MatrixXd::Zero(Eigen::Index(nv), Eigen::Index(nv));
    Eigen::VectorXd b = Eigen::VectorXd::Zero(Eigen::Index(nv));
    for (std::size_t i = 0; i < cols; ++i) {
        const std::size_t gi = i / lay.group_cols;
        for (int k = 0; k < per; ++k) b(Eigen::Index(gi * per + k)) += e[i * per + k] * hw(Eigen::Index(i));
        for (std::size_t j = 0; j < cols; ++j) {
            const double hij = hs(Eigen::Index(i), Eigen::Index(j));
            if (hij == 0.0) continue;
            const std::size_t gj = j / lay.group_cols;
            for (int k = 0; k < per; ++k)
                for (int l = 0; l < per; ++l)
                    m(Eigen::Index(gi * per + k), Eigen::Index(gj * per + l)) += e[i * per + k] * hij * e[j * per + l];
        }
    }
    const double lambda = 1e-12 * m.trace() / double(nv) + 1e-300;
    Eigen::VectorXd xold(static_cast<Eigen::Index>(nv));
    for (std::size_t g = 0; g < ng; ++g) {
        xold(Eigen::Index(g * per)) = old[g].scale;
        if constexpr (per == 2) xold(Eigen::Index(g * per + 1)) = old[g].min;
    }
    m.diagonal().array() += lambda;
    const Eigen::VectorXd x = m.ldlt().solve(b + lambda * xold);
    if (!detail::all_finite(x)) return false;
    for (std::size_t g = 0; g < ng; ++g) {
        const double s = x(Eigen::Index(g * per));
        if (!(s > 0.0) || s > double(std::numeric_limits<float>::max())) return false;
        p[g] = old[g];
        p[g].scale = to_stored_scale(static_cast<float>(s), st);
        if constexpr (per == 2) {
            const float mn = round_to_storage(static_cast<float>(x(Eigen::Index(g * per + 1))), st);
            if (!std::isfinite(mn)) return false;
            p[g].min = mn;
        }
    }
    return true;
}
}  // namespace detail

/// Coordinate descent on the layer objective f(W^) = tr((W - W^) H (W - W^)^T) over the
/// quantization grid, the group parameters of `q` held fixed (docs/DESIGN.md §12.6).
///
/// The objective separates over rows: f = sum_r d_r H d_r^T with d_r = w_r - w^_r. A pass visits
/// the columns j = 0 .. in-1 (storage order) of every row; with g = H d_r (double, recomputed
/// exactly at the start of each pass and updated by g += delta H[:, j] after each change), the
/// unconstrained minimiser of f over w^_j alone is t = w^_j + g_j / H_jj, and f is a convex
/// parabola in w^_j, so the best grid value is the one nearest t: c = F::quantize(t, params,
/// half_even) (plus its two neighbours c +- 1 for the integer formats, whose code steps are
/// uniform, so that a reciprocal rounding of t cannot miss the nearest level). The change
/// delta = w^_j - F::dequantize(c) moves f by df = 2 delta g_j + delta^2 H_jj (exact in real
/// arithmetic) and is applied only if df < -1e-12 * (f_r + 1e-300) (f_r the row's current
/// objective), so every accepted step lowers f by more than the rounding error of the
/// incremental bookkeeping: a pass never increases the objective (checked in the tests against
/// output_error_proxy, in double). Columns with H_jj <= 0 (dead inputs) are left unchanged.
///
/// `storage_perm`: the original column of storage column k (GptqResult::storage_perm; empty =
/// identity). w and h are in the original column order. Deterministic (one thread, fixed order).
/// Cost per pass: 2 * out * in^2 flops at most (in^2 per row for g, in per accepted change).
/// Throws ptq::invalid_argument for mismatched shapes or a bad storage_perm, and
/// ptq::non_finite_error for NaN/Inf in w, h or the dequantized q.
template <QuantFormat F, class Arch = xsimd::default_arch, class DW, class DH>
RefineResult<F> refine_rounding(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DH>& h,
                                const QuantizedMatrix<F>& q, const RefineOptions& o = {},
                                std::span<const std::size_t> storage_perm = {}) {
    detail::check_refine_options(o);
    const auto rows = Eigen::Index(q.rows()), cols = Eigen::Index(q.cols());
    if (w.rows() != rows || w.cols() != cols)
        detail::throw_invalid("refine_rounding", "w",
                              "is " + std::to_string(w.rows()) + "x" + std::to_string(w.cols()) + ", q is " +
                                  std::to_string(rows) + "x" + std::to_string(cols));
    if (h.rows() != cols || h.cols() != cols) detail::throw_invalid("refine_rounding", "h", "must be in x in");
    constexpr bool refittable = F::kind == FormatKind::integer || F::kind == FormatKind::integer_min;
    if (o.refit_scales && (!refittable || q.layout().group_rows != 1))
        detail::throw_invalid("refine_rounding", "options.refit_scales",
                              "needs an IntFormat or IntMinFormat with one parameter set per row (got " +
                                  std::string(F::name()) + ", " + std::to_string(q.layout().group_rows) +
                                  " rows per group)");
    std::vector<std::size_t> perm(std::size_t(cols), 0);
    std::iota(perm.begin(), perm.end(), std::size_t(0));
    if (!storage_perm.empty()) {
        if (storage_perm.size() != std::size_t(cols))
            detail::throw_invalid("refine_rounding", "storage_perm", "size differs from in_features");
        std::vector<char> seen(std::size_t(cols), 0);
        for (std::size_t k = 0; k < perm.size(); ++k) {
            const std::size_t c = storage_perm[k];
            if (c >= std::size_t(cols) || seen[c])
                detail::throw_invalid("refine_rounding", "storage_perm", "is not a permutation");
            seen[c] = 1;
            perm[k] = c;
        }
    }
    // W and H in storage column order, in double.
    Eigen::MatrixXd ws(rows, cols), hs(cols, cols);
    for (Eigen::Index k = 0; k < cols; ++k)
        ws.col(k) = w.col(Eigen::Index(perm[std::size_t(k)])).template cast<double>();
    for (Eigen::Index a = 0; a < cols; ++a)
        for (Eigen::Index b = 0; b < cols; ++b)
            hs(a, b) = double(h(Eigen::Index(perm[std::size_t(a)]), Eigen::Index(perm[std::size_t(b)])));
    if (!detail::all_finite(ws)) detail::throw_non_finite("refine_rounding", "w", "weights");
    if (!detail::all_finite(hs)) detail::throw_non_finite("refine_rounding", "h", "Hessian");

    RefineResult<F> r;
    r.quantized = q;
    QuantizedMatrix<F>& out = r.quantized;
    const GroupLayout& lay = out.layout();
    RowMatrixXf wh = dequantize<F, Arch>(out);
    if (!detail::all_finite(wh)) detail::throw_non_finite("refine_rounding", "q", "dequantizes to NaN/Inf");
    Eigen::MatrixXd d = ws - wh.template cast<double>();
    r.objective.push_back((d * hs).cwiseProduct(d).sum());
    const Eigen::VectorXd hdiag = hs.diagonal();

    // The code to try for target t: the nearest one, and for integer formats its neighbours.
    const auto candidates = [](float t, const typename F::Params& p, std::uint8_t(&c)[3]) -> int {
        c[0] = F::quantize(t, p, Rounding::half_even);
        if constexpr (F::kind == FormatKind::integer || F::kind == FormatKind::integer_min) {
            int n = 1;
            if (int(c[0]) > int(F::code_min)) c[n++] = std::uint8_t(c[0] - 1);
            if (int(c[0]) < int(F::code_max)) c[n++] = std::uint8_t(c[0] + 1);
            return n;
        } else {
            return 1;
        }
    };

    for (int pass = 0; pass < o.passes; ++pass) {
        std::size_t changed = 0;
        const Eigen::MatrixXd g_all = d * hs;  // row r: g = H d_r (H symmetric)
        for (Eigen::Index row = 0; row < rows; ++row) {
            Eigen::VectorXd g = g_all.row(row).transpose();
            double f = d.row(row).dot(g);
            const typename F::Params* prm = out.row_params(std::size_t(row));
            std::uint8_t* packed = out.row_data(std::size_t(row));
            for (Eigen::Index j = 0; j < cols; ++j) {
                const double hjj = hdiag(j);
                if (!(hjj > 0.0)) continue;
                const typename F::Params& p = prm[std::size_t(j) / lay.group_cols];
                const float cur = wh(row, j);
                const double t = double(cur) + g(j) / hjj;
                if (!std::isfinite(t)) continue;
                std::uint8_t cand[3];
                const int nc = candidates(static_cast<float>(t), p, cand);
                double best_df = -1e-12 * (f + 1e-300);
                int best = -1;
                float best_v = cur;
                for (int k = 0; k < nc; ++k) {
                    const float v = F::dequantize(cand[k], p);
                    if (!std::isfinite(v) || v == cur) continue;
                    const double delta = double(cur) - double(v);  // change of d_j
                    const double df = 2.0 * delta * g(j) + delta * delta * hjj;
                    if (df < best_df) {
                        best_df = df;
                        best = k;
                        best_v = v;
                    }
                }
                if (best < 0) continue;
                const double delta = double(cur) - double(best_v);
                ref::set_code(packed, std::size_t(j), F::bits, cand[best]);
                wh(row, j) = best_v;
                d(row, j) += delta;
                g += delta * hs.col(j);
                f += best_df;
                ++changed;
            }
        }
        r.changed += changed;
        std::size_t refitted = 0;
        if constexpr (refittable) {
            if (o.refit_scales) {
                const std::size_t ng = lay.col_groups();
                std::vector<typename F::Params> cand(ng);
                const Eigen::MatrixXd hw_all = ws * hs;  // row r: H w_r
                for (Eigen::Index row = 0; row < rows; ++row) {
                    typename F::Params* prm = out.row_params(std::size_t(row));
                    const std::uint8_t* packed = out.row_data(std::size_t(row));
                    if (!detail::refit_row_params<F>(hs, hw_all.row(row).transpose(), packed, lay, o.scale_storage, prm,
                                                     cand.data()))
                        continue;
                    Eigen::RowVectorXd dn(cols);
                    Eigen::RowVectorXf whn(cols);
                    for (Eigen::Index j = 0; j < cols; ++j) {
                        whn(j) =
                            F::dequantize(static_cast<std::uint8_t>(ref::get_code(packed, std::size_t(j), F::bits)),
                                          cand[std::size_t(j) / lay.group_cols]);
                        dn(j) = ws(row, j) - double(whn(j));
                    }
                    if (!detail::all_finite(whn)) continue;
                    const double f_old = (d.row(row) * hs).dot(d.row(row));
                    const double f_new = (dn * hs).dot(dn);
                    if (!(f_new < f_old - 1e-12 * (f_old + 1e-300))) continue;
                    std::copy(cand.begin(), cand.end(), prm);
                    wh.row(row) = whn;
                    d.row(row) = dn;
                    ++refitted;
                }
            }
        }
        r.refitted += refitted;
        r.objective.push_back((d * hs).cwiseProduct(d).sum());
        if (changed == 0 && refitted == 0) break;
    }
    // Dequantized weights in the original column order.
    r.dequantized.resize(rows, cols);
    for (Eigen::Index k = 0; k < cols; ++k) r.dequantized.col(Eigen::Index(perm[std::size_t(k)])) = wh.col(k);
    return r;
}

/// refine_rounding of a GPTQ result (its storage_perm is used); h is normally the Hessian GPTQ
/// was given (the objective is then GPTQ's undamped layer loss).
template <QuantFormat F, class Arch = xsimd::default_arch, class DW, class DH>
RefineResult<F> refine_rounding(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DH>& h,
                                const GptqResult<F>& gptq, const RefineOptions& o = {}) {
    return refine_rounding<F, Arch>(w, h, gptq.quantized, o, std::span<const std::size_t>(gptq.storage_perm));
}

}  // namespace ptq
