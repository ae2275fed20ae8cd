#pragma once
// Streaming calibration statistics of the inputs X [tokens x in_features] of a linear layer:
// the GPTQ Hessian H = 2/n * sum_t x_t^T x_t, per-channel max|x| and mean|x|, and the
// per-sample channel means of L^2QER. Mergeable across batches and threads.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <ptq/detail/blas.hpp>
#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>
#include <ptq/parallel.hpp>

namespace ptq {

/// Arithmetic of the Hessian accumulation.
///  - float_chunks (default, fast): tokens are buffered into chunks of CalibOptions::chunk_tokens
///    consecutive tokens of the stream (chunk k = tokens [k*c, (k+1)*c) by global token index,
///    whatever the batch boundaries); each full chunk C is reduced in float to the lower
///    triangle of S_C = C^T C (panels of 256 columns computed by GEMM; products rounded to
///    float, sums of c terms in float), and S_C is widened and added into the double
///    accumulator; the last partial chunk is reduced in double when hessian() is called. Per entry the relative error
///    is about sqrt(c) * 2^-24 of sum |x_i x_j| (c = 1024: ~2e-6), far below what GPTQ's 1 % damping cares about (the
///    reference GPTQ accumulates entirely in float32). Because chunks follow the global token
///    index, re-splitting the same token stream into other batches gives a bit-identical H;
///    merge() of two independent streams concatenates their pending partial chunks, so it
///    agrees with a single pass to float rounding (~1e-6 relative) only.
///  - double_exact: every product and sum in double (rank-k update on double): relative error
///    ~1e-16 * n, any split or merge agrees to ~1e-15; about 2x slower.
enum class HessianPrecision : std::uint8_t { float_chunks, double_exact };

/// Options of CalibrationStats. Plain struct; defaults documented.
struct CalibOptions {
    HessianPrecision precision = HessianPrecision::float_chunks;  ///< see HessianPrecision
    std::size_t chunk_tokens = 1024;                              ///< chunk length of float_chunks (>= 1)
    bool hessian = true;  ///< accumulate H at all (O(in^2) memory); the per-channel statistics are always kept
};

/// Streaming statistics of a layer's calibration inputs.
///
/// add(X) takes one batch X [tokens x in_features] (any dense Eigen expression, any storage
/// order; it is read as float) and counts it as ONE SAMPLE (one sequence) for the per-sample
/// statistics. Kept, for every input channel j (n = total tokens so far):
///   S        = sum_t x_t^T x_t          (lower triangle, double; see HessianPrecision)
///   hessian  = 2/n * S                   (the GPTQ Hessian, symmetric, in double)
///   max_abs  = max_t |x_tj|
///   mean_abs = (sum_t |x_tj|) / n        (sum in double)
///   sample_mean_abs_max = max over samples s of (sum_{t in s} |x_tj|) / n_s   (L^2QER's s_j)
/// merge(other) combines two accumulators as if all of other's batches had been added after
/// this one's. NaN/Inf in a batch -> ptq::non_finite_error naming argument 'x' (the object is
/// left unchanged); a batch with the wrong number of columns -> ptq::invalid_argument.
class CalibrationStats {
public:
    explicit CalibrationStats(Eigen::Index in_features, const CalibOptions& options = {})
        : opt_(options), in_(in_features) {
        if (in_features < 0) detail::throw_invalid("CalibrationStats", "in_features", "must be >= 0");
        if (opt_.chunk_tokens == 0) detail::throw_invalid("CalibrationStats", "options.chunk_tokens", "must be >= 1");
        if (opt_.hessian) S_.setZero(in_, in_);
        max_abs_.setZero(in_);
        sum_abs_.setZero(in_);
        sample_mean_max_.setZero(in_);
        if (opt_.hessian && opt_.precision == HessianPrecision::float_chunks)
            pending_.resize(static_cast<Eigen::Index>(opt_.chunk_tokens), in_);
    }

    const CalibOptions& options() const noexcept { return opt_; }
    Eigen::Index in_features() const noexcept { return in_; }
    /// Tokens added so far (n).
    std::size_t tokens() const noexcept { return n_; }
    /// Samples (add() calls with at least one token, plus merged ones).
    std::size_t samples() const noexcept { return samples_; }

    /// Adds one sample (batch) X [tokens x in_features].
    template <class Derived>
    void add(const Eigen::MatrixBase<Derived>& x) {
        if (x.cols() != in_)
            detail::throw_invalid("CalibrationStats::add", "x",
                                  "has " + std::to_string(x.cols()) +
                                      " columns, expected in_features = " + std::to_string(in_));
        const Eigen::Index t = x.rows();
        if (t == 0 || in_ == 0) {
            if (t > 0) {
                n_ += static_cast<std::size_t>(t);
                ++samples_;
            }
            return;
        }
        // Column-major float copy (no transposition for the usual column-major input): each
        // channel contiguous for the per-channel statistics and the X^T X panels.
        Eigen::MatrixXf xf = x.template cast<float>();
        for (Eigen::Index c = 0; c < in_; ++c)
            if (!detail::all_finite(xf.col(c)))
                for (Eigen::Index r = 0; r < t; ++r)
                    if (!std::isfinite(xf(r, c)))
                        detail::throw_non_finite("CalibrationStats::add", "x",
                                                 "token " + std::to_string(r) + ", channel " + std::to_string(c));
        // Per-channel statistics: |x| sums in double, maxima exact.
        for (Eigen::Index c = 0; c < in_; ++c) {
            const auto col = xf.col(c).cwiseAbs();
            max_abs_[c] = std::max(max_abs_[c], col.maxCoeff());
            double s = 0.0;
            for (Eigen::Index r = 0; r < t; ++r) s += double(col[r]);
            sum_abs_[c] += s;
            sample_mean_max_[c] = std::max(sample_mean_max_[c], s / double(t));
        }
        n_ += static_cast<std::size_t>(t);
        ++samples_;
        if (opt_.hessian) add_to_hessian(xf);
    }

    /// Combines `other` into *this (same in_features and options required).
    void merge(const CalibrationStats& other) {
        if (other.in_ != in_)
            detail::throw_invalid("CalibrationStats::merge", "other",
                                  "in_features " + std::to_string(other.in_) + " differs from " + std::to_string(in_));
        if (other.opt_.hessian != opt_.hessian || other.opt_.precision != opt_.precision ||
            other.opt_.chunk_tokens != opt_.chunk_tokens)
            detail::throw_invalid("CalibrationStats::merge", "other", "was built with different CalibOptions");
        max_abs_ = max_abs_.cwiseMax(other.max_abs_);
        sum_abs_ += other.sum_abs_;
        sample_mean_max_ = sample_mean_max_.cwiseMax(other.sample_mean_max_);
        n_ += other.n_;
        samples_ += other.samples_;
        if (!opt_.hessian) return;
        S_.triangularView<Eigen::Lower>() += other.S_;
        if (opt_.precision == HessianPrecision::float_chunks && other.fill_ > 0) {
            // Append other's pending tokens to ours (flushing full chunks).
            const Eigen::MatrixXf tail = other.pending_.topRows(static_cast<Eigen::Index>(other.fill_));
            push_rows(tail);
        }
    }

    /// H = 2/n * S as a full symmetric double matrix (pending float chunk included).
    /// Zero matrix when no token was seen. Throws ptq::invalid_argument if the Hessian is off.
    Eigen::MatrixXd hessian() const {
        if (!opt_.hessian) detail::throw_invalid("CalibrationStats::hessian", "options.hessian", "is false");
        Eigen::MatrixXd h = S_;
        if (fill_ > 0) {
            Eigen::MatrixXd p = Eigen::MatrixXd::Zero(in_, in_);
            const auto blk = pending_.topRows(static_cast<Eigen::Index>(fill_));
            p.selfadjointView<Eigen::Lower>().rankUpdate(blk.transpose().cast<double>());
            h.triangularView<Eigen::Lower>() += p;
        }
        // H = 2/n * S on the lower triangle, mirrored to the upper one: 64-column blocks in
        // parallel, each scaling its column block below the diagonal and writing the transpose
        // into its row block (disjoint writes; the same products whatever the thread count).
        const double f = n_ > 0 ? 2.0 / double(n_) : 0.0;
        constexpr Eigen::Index T = 64;
        detail::parallel_for(std::size_t((in_ + T - 1) / T), [&](std::size_t task) {
            const Eigen::Index j0 = Eigen::Index(task) * T, w = std::min(T, in_ - j0);
            for (Eigen::Index j = j0; j < j0 + w; ++j) {
                h.col(j).tail(in_ - j) *= f;
                h.col(j).segment(j0, j - j0) = h.row(j).segment(j0, j - j0).transpose();  // inside the diagonal block
            }
            for (Eigen::Index i0 = j0 + w; i0 < in_; i0 += T) {
                const Eigen::Index r = std::min(T, in_ - i0);
                h.block(j0, i0, w, r) = h.block(i0, j0, r, w).transpose();
            }
        });
        return h;
    }
    /// Per-channel max |x_j| over all tokens.
    const Eigen::VectorXf& max_abs() const noexcept { return max_abs_; }
    /// Per-channel mean |x_j| = (sum_t |x_tj|) / n (zeros when n = 0).
    Eigen::VectorXd mean_abs() const {
        return n_ > 0 ? Eigen::VectorXd(sum_abs_ / double(n_)) : Eigen::VectorXd(sum_abs_);
    }
    /// Per-channel sum |x_j| (double).
    const Eigen::VectorXd& sum_abs() const noexcept { return sum_abs_; }
    /// L^2QER's channel magnitude: max over samples of the per-sample mean |x_j|.
    const Eigen::VectorXd& sample_mean_abs_max() const noexcept { return sample_mean_max_; }

private:
    void add_to_hessian(const Eigen::MatrixXf& xf) {
        if (opt_.precision == HessianPrecision::double_exact) {
            // S += X^T X in double, lower triangle only (symmetric rank-k update).
            S_.selfadjointView<Eigen::Lower>().rankUpdate(xf.transpose().cast<double>());
            return;
        }
        push_rows(xf);
    }

    // Appends rows to the pending chunk; every full chunk C is reduced as S += double(C^T C)
    // (float rank-k update into a scratch matrix, then widened and added).
    void push_rows(const Eigen::MatrixXf& rows) {
        const auto c = static_cast<Eigen::Index>(opt_.chunk_tokens);
        Eigen::Index r = 0;
        const Eigen::Index t = rows.rows();
        while (r < t) {
            if (fill_ == 0 && t - r >= c) {  // a whole chunk inside the batch: no copy
                reduce_chunk(rows.middleRows(r, c));
                r += c;
                continue;
            }
            const Eigen::Index take = std::min<Eigen::Index>(c - static_cast<Eigen::Index>(fill_), t - r);
            pending_.middleRows(static_cast<Eigen::Index>(fill_), take) = rows.middleRows(r, take);
            fill_ += static_cast<std::size_t>(take);
            r += take;
            if (fill_ == opt_.chunk_tokens) {
                reduce_chunk(pending_);
                fill_ = 0;
            }
        }
    }
    // S += double(C^T C) for a chunk C [c x in] (column-major): the lower triangle of the float
    // product is computed as panels of 256 columns, S[j:, j:j+256] = C[:, j:]^T C[:, j:j+256]
    // (plain GEMMs through detail::gemm: BLAS or Eigen, faster than Eigen's triangular rank-k
    // product), then widened and added. The panels run in parallel (ptq::set_num_threads);
    // each is one product whatever the thread count, so S does not depend on it.
    void reduce_chunk(const detail::ConstMatRef& chunk) {
        if (scratch_.rows() != in_) scratch_.resize(in_, in_);
        constexpr Eigen::Index panel = 256;
        const auto panels = std::size_t((in_ + panel - 1) / panel);
        detail::parallel_for(panels, [&](std::size_t p) {
            // (Tasks start in index order: the tallest panels first.)
            const Eigen::Index j = Eigen::Index(p) * panel, w = std::min(panel, in_ - j);
            detail::gemm(scratch_.block(j, j, in_ - j, w), chunk.middleCols(j, in_ - j), true, chunk.middleCols(j, w),
                         false, 1.0f, 0.0f);
            S_.block(j, j, in_ - j, w).triangularView<Eigen::Lower>() +=
                scratch_.block(j, j, in_ - j, w).cast<double>();
        });
    }

    CalibOptions opt_;
    Eigen::Index in_ = 0;
    std::size_t n_ = 0, samples_ = 0;
    Eigen::MatrixXd S_;  // lower triangle of sum x^T x
    Eigen::VectorXf max_abs_;
    Eigen::VectorXd sum_abs_;
    Eigen::VectorXd sample_mean_max_;
    Eigen::MatrixXf pending_;  // float_chunks: [chunk_tokens x in] buffer (column-major)
    std::size_t fill_ = 0;     // tokens in pending_
    Eigen::MatrixXf scratch_;  // float chunk product
};

}  // namespace ptq
