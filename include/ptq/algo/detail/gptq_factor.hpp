#pragma once
// Internals of GPTQ: the upper Cholesky factor of (H + lambda I)^-1, computed without forming
// the inverse, with damping retries.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <ptq/detail/blas.hpp>
#include <ptq/parallel.hpp>

namespace ptq::detail {

/// In-place inverse of a lower-triangular n x n matrix L (column-major; the strictly upper
/// part is ignored and left untouched). Blocked as LAPACK's xTRTRI, from the bottom-right:
/// for the diagonal block k of width w,
///   X_kk = L_kk^-1                                   (triangular solve against I_w)
///   X_ik = -X_ii * L_ik * X_kk   (i = the trailing rows, X_ii already inverted: a TRMM)
/// which costs n^3/3 flops (a TRSM against the identity would cost n^3).
inline void invert_lower_in_place(Eigen::Ref<Eigen::MatrixXf> l, Eigen::Index nb = 128) {
    const Eigen::Index n = l.rows();
    if (n == 0) return;
    Eigen::MatrixXf d, t;
    for (Eigen::Index jb = ((n - 1) / nb) * nb; jb >= 0; jb -= nb) {
        const Eigen::Index w = std::min(nb, n - jb), r = n - jb - w;
        d.setIdentity(w, w);
        l.block(jb, jb, w, w).triangularView<Eigen::Lower>().solveInPlace(d);  // d = L_kk^-1 (lower)
        if (r > 0) {
            t.noalias() = l.block(jb + w, jb + w, r, r).triangularView<Eigen::Lower>() * l.block(jb + w, jb, r, w);
            l.block(jb + w, jb, r, w).noalias() = -t * d.triangularView<Eigen::Lower>();
        }
        l.block(jb, jb, w, w).triangularView<Eigen::Lower>() = d;
    }
}

/// In place, the lower Cholesky factor of a symmetric positive-definite A (column-major; the
/// lower triangle is read): A = L L^T, L in the lower triangle (the strictly upper triangle is
/// left undefined). Right-looking, in blocks of nb columns: for the diagonal block k,
///   L_kk = chol(A_kk)                        (Eigen's LLT on nb x nb)
///   L_ik = A_ik L_kk^-T                      (triangular solves, in parallel over 256-row tiles)
///   A_ij -= L_ik L_jk^T  for i >= j > k      (the trailing lower triangle: one GEMM per
///                                             256-column panel, the panels in parallel)
/// on ptq's threads with detail::gemm (BLAS or Eigen); the tiles depend only on n, so the
/// factor is the same whatever the thread count. Cost n^3/3 flops. Returns false if A is not
/// numerically positive definite.
inline bool cholesky_lower_in_place(Eigen::MatrixXf& a, Eigen::Index nb = 256) {
    const Eigen::Index n = a.rows();
    for (Eigen::Index k = 0; k < n; k += nb) {
        const Eigen::Index b = std::min(nb, n - k), r = n - k - b;
        {
            Eigen::Ref<Eigen::MatrixXf> akk(a.block(k, k, b, b));
            Eigen::LLT<Eigen::Ref<Eigen::MatrixXf>, Eigen::Lower> llt(akk);  // in place
            if (llt.info() != Eigen::Success) return false;
        }
        if (r == 0) break;
        const auto lkk = a.block(k, k, b, b).triangularView<Eigen::Lower>();
        const auto tiles = std::size_t((r + 255) / 256);
        parallel_for(tiles, [&](std::size_t t) {
            const Eigen::Index t0 = Eigen::Index(t) * 256, tl = std::min<Eigen::Index>(256, r - t0);
            lkk.transpose().template solveInPlace<Eigen::OnTheRight>(a.block(k + b + t0, k, tl, b));
        });
        parallel_for(tiles, [&](std::size_t t) {
            const Eigen::Index j = Eigen::Index(t) * 256, w = std::min<Eigen::Index>(256, r - j);
            gemm(a.block(k + b + j, k + b + j, r - j, w), a.block(k + b + j, k, r - j, b), false,
                 a.block(k + b + j, k, w, b), true, -1.0f, 1.0f);
        });
    }
    return true;
}

/// First half of both factorisations below: in place, reverses the column-major array (that
/// is J A J, J the reversal permutation) and overwrites its lower triangle with L, J A J = L L^T
/// (cholesky_lower_in_place). Returns false if A is not numerically positive definite.
inline bool reversed_lower_cholesky(Eigen::MatrixXf& a) {
    const Eigen::Index n = a.rows();
    std::reverse(a.data(), a.data() + n * n);  // J A J (contiguous n x n storage)
    if (!cholesky_lower_in_place(a)) return false;
    for (Eigen::Index i = 0; i < n; ++i)
        if (!(a(i, i) > 0.0f) || !std::isfinite(a(i, i))) return false;
    return true;
}

/// True if the upper triangle of a is finite with a positive diagonal.
inline bool upper_factor_ok(const Eigen::MatrixXf& a) {
    for (Eigen::Index j = 0; j < a.cols(); ++j) {
        if (!(a(j, j) > 0.0f)) return false;
        for (Eigen::Index i = 0; i <= j; ++i)
            if (!std::isfinite(a(i, j))) return false;
    }
    return true;
}

/// Computes in place the upper-triangular V with V V^T = A for a symmetric positive-definite A
/// (column-major, both triangles valid on entry): J A J = L L^T, V = J L J. Cost n^3/3 flops.
/// V = U^-1 for the U of upper_cholesky_of_inverse (U^T U = A^-1), which is what the blocked
/// GPTQ uses (no triangular inverse). Only the upper triangle of the output is meaningful.
/// Returns false if A is not numerically positive definite or V is not finite.
inline bool upper_cholesky_factor(Eigen::MatrixXf& a) {
    const Eigen::Index n = a.rows();
    if (n == 0) return true;
    if (!reversed_lower_cholesky(a)) return false;
    std::reverse(a.data(), a.data() + n * n);  // V = J L J (upper)
    return upper_factor_ok(a);
}

/// Computes in place the upper-triangular U with U^T U = A^-1 for a symmetric positive-definite
/// A (column-major, both triangles valid on entry). Method ("reverse Cholesky"): with J the
/// reversal permutation, J A J = L L^T (lower Cholesky), so A = V V^T with V = J L J upper and
/// A^-1 = V^-T V^-1, i.e. U = V^-1 = J L^-1 J. Steps: reverse the column-major array (that is
/// J A J), Eigen's blocked LLT in place, blocked in-place inverse of L, reverse again. Cost
/// 2n^3/3 flops (chol(inv(A)) as in the reference implementation costs n^3). U is the unique
/// Cholesky factor with positive diagonal, identical in exact arithmetic to the reference's
/// torch.linalg.cholesky(cholesky_inverse(chol(A)), upper=True). Only the upper triangle of the
/// output is meaningful. Returns false if A is not numerically positive definite or the factor
/// is not finite (the caller raises the damping and retries).
inline bool upper_cholesky_of_inverse(Eigen::MatrixXf& a) {
    const Eigen::Index n = a.rows();
    if (n == 0) return true;
    if (!reversed_lower_cholesky(a)) return false;
    invert_lower_in_place(a);
    std::reverse(a.data(), a.data() + n * n);  // U = J L^-1 J (upper)
    return upper_factor_ok(a);
}

}  // namespace ptq::detail
