// Thread count (ptq::set_num_threads) and determinism: every algorithm gives bit-identical
// results with 1, 2 and 3 threads. The shapes are chosen so that every parallel loop has
// several tasks (GPTQ: > 256 rows and > 256 columns, so the row blocks and the blocked
// Cholesky split; the Hessian: > 256 features; RTN / dequantize / gemm: > 16 rows).
#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <Eigen/Core>

#include <ptq/algo/awq.hpp>
#include <ptq/algo/gptq.hpp>
#include <ptq/algo/lqer.hpp>
#include <ptq/algo/pipeline.hpp>
#include <ptq/algo/rtn.hpp>
#include <ptq/algo/smooth_quant.hpp>
#include <ptq/calib/calibration_stats.hpp>
#include <ptq/format/int_format.hpp>
#include <ptq/format/mx_int.hpp>
#include <ptq/gemv.hpp>
#include <ptq/parallel.hpp>
#include <ptq/quantize.hpp>

#include "../format/support.hpp"

namespace {

using Int4 = ptq::IntFormat<4, false>;
using G32 = ptq::PerGroup<32>;

using Mat = Eigen::MatrixXf;  // column-major inputs, drawn by ptq_test::gaussian in that order

/// Correlated activations with outlier channels (a Hessian far from diagonal).
Eigen::MatrixXf activations(Eigen::Index tokens, Eigen::Index n, unsigned seed) {
    Eigen::MatrixXf x = ptq_test::gaussian<Mat>(tokens, 8, seed) * ptq_test::gaussian<Mat>(8, n, seed + 1) +
                        0.3f * ptq_test::gaussian<Mat>(tokens, n, seed + 2);
    for (Eigen::Index j = 3; j < n; j += 37) x.col(j) *= 10.0f;
    return x;
}

/// The bytes of everything an algorithm returned, appended in order.
struct Bytes {
    std::vector<unsigned char> b;
    template <class T>
    void add(const T* p, std::size_t n) {
        const auto* c = reinterpret_cast<const unsigned char*>(p);
        b.insert(b.end(), c, c + n * sizeof(T));
    }
    template <class M>
    void matrix(const M& m) {
        add(m.data(), std::size_t(m.size()));
    }
    template <class F>
    void quantized(const ptq::QuantizedMatrix<F>& q) {
        for (std::size_t r = 0; r < q.rows(); ++r) add(q.row_data(r), q.row_stride());
        add(q.params().data(), q.params().size());
    }
    void number(double v) { add(&v, 1); }
};

/// Runs fn with 1, 2 and 3 threads: the bytes must be identical (and not empty).
template <class Fn>
void check_same_for_thread_counts(Fn&& fn) {
    std::vector<Bytes> out;
    for (std::size_t t : {1, 2, 3}) {
        ptq::set_num_threads(t);
        CHECK(ptq::num_threads() == t);
        Bytes b;
        fn(b);
        out.push_back(std::move(b));
    }
    ptq::set_num_threads(0);
    REQUIRE(!out[0].b.empty());
    CHECK(out[1].b == out[0].b);
    CHECK(out[2].b == out[0].b);
}

}  // namespace

TEST_CASE("parallel: set_num_threads, tasks, exceptions") {
    ptq::set_num_threads(0);
    CHECK(ptq::num_threads() >= 1);
    ptq::set_num_threads(3);
    CHECK(ptq::num_threads() == 3);
    // Every task runs exactly once.
    std::vector<std::atomic<int>> hits(1000);
    ptq::detail::parallel_for(hits.size(), [&](std::size_t i) { hits[i].fetch_add(1); });
    for (const auto& h : hits) CHECK(h.load() == 1);
    // The exception of the lowest-numbered failing task is the one rethrown; every task ran.
    std::atomic<int> ran{0};
    try {
        ptq::detail::parallel_for(100, [&](std::size_t i) {
            ran.fetch_add(1);
            if (i == 97 || i == 41 || i == 60) throw std::runtime_error(std::to_string(i));
        });
        FAIL("no exception");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "41");
    }
    CHECK(ran.load() == 100);
    // A loop inside a task runs serially on that task's thread.
    std::atomic<int> inner{0};
    ptq::detail::parallel_for(4, [&](std::size_t) { ptq::detail::parallel_for(5, [&](std::size_t) { ++inner; }); });
    CHECK(inner.load() == 20);
    ptq::set_num_threads(0);
}

TEST_CASE("parallel: RTN, clip search, dequantize and the Hessian are independent of the thread count") {
    const Eigen::MatrixXf w = ptq_test::gaussian<Mat>(70, 96, 1, 0.05f);
    check_same_for_thread_counts([&](Bytes& b) {
        const auto q = ptq::quantize<Int4, G32>(w);
        b.quantized(q);
        b.matrix(ptq::dequantize(q));
        ptq::QuantOptions o;
        o.range = ptq::RangeMethod::mse_search;
        b.quantized(ptq::Rtn<Int4, G32>(o).quantize(w));
        b.matrix(ptq::fake_quantize<ptq::MxInt<8, 32>>(w));
    });
    const Eigen::MatrixXf x = activations(300, 300, 2);
    check_same_for_thread_counts([&](Bytes& b) {
        for (auto prec : {ptq::HessianPrecision::float_chunks, ptq::HessianPrecision::double_exact}) {
            ptq::CalibrationStats s(300, {prec, 64});
            s.add(x.topRows(150));
            s.add(x.bottomRows(150));
            b.matrix(s.hessian());
        }
    });
}

TEST_CASE("parallel: GPTQ (act-order, static groups, MX) is independent of the thread count") {
    const Eigen::MatrixXf w = ptq_test::gaussian<Mat>(520, 288, 3, 0.02f);
    ptq::CalibrationStats s(288);
    s.add(activations(400, 288, 4));
    const Eigen::MatrixXd h = s.hessian();
    check_same_for_thread_counts([&](Bytes& b) {
        ptq::GptqOptions o;
        o.act_order = true;
        const auto r = ptq::Gptq<Int4, G32>(o).quantize(w, h);
        b.quantized(r.quantized);
        b.matrix(r.dequantized);
        b.number(r.diagnostics.damped_loss);
        b.number(r.diagnostics.damped_loss_rtn);
        o.static_groups = true;
        o.quant.range = ptq::RangeMethod::mse_search;
        const auto rs = ptq::Gptq<Int4, G32>(o).quantize(w, h);
        b.quantized(rs.quantized);
        b.number(rs.diagnostics.damped_loss);
        const auto mx = ptq::Gptq<ptq::MxInt<4, 32>>(ptq::GptqOptions{}).quantize(w, h);
        b.matrix(mx.dequantized);
        b.number(mx.diagnostics.damped_loss);
    });
}

TEST_CASE("parallel: AWQ, SmoothQuant, LQER and the pipeline are independent of the thread count") {
    const Eigen::MatrixXf x = activations(96, 64, 5);
    const ptq::RowMatrixXf w1 = ptq_test::gaussian<Mat>(40, 64, 6, 0.05f),
                           w2 = ptq_test::gaussian<Mat>(24, 64, 7, 0.05f);
    check_same_for_thread_counts([&](Bytes& b) {
        const auto a = ptq::Awq<Int4, G32>().compute(x, ptq::linears(w1, w2));
        b.matrix(a.scales);
        for (const auto& q : a.quantized) b.quantized(q);
        for (double l : a.output_mse_per_alpha) b.number(l);
        const auto sq = ptq::SmoothQuant().compute(x.cwiseAbs().colwise().maxCoeff().transpose(), ptq::linears(w1, w2));
        b.matrix(sq.scales);
        ptq::LqerOptions lo;
        lo.rank = 4;
        lo.scaled = false;
        const auto l = ptq::Lqer<Int4, G32>(lo).compute(w1);
        b.matrix(l.A);
        b.matrix(l.B);
        ptq::PipelineOptions po;
        po.transform = ptq::Transform::awq;
        po.reconstruct = ptq::Reconstruct::gptq;
        const auto p = ptq::Pipeline<Int4, G32>(po).quantize(x, ptq::linears(w1, w2));
        for (const auto& e : p.effective) b.matrix(e);
        for (double m : p.output_mse) b.number(m);
    });
}

TEST_CASE(
    "parallel: gemm (float and integer activations, fused and general paths) is independent of the thread count") {
    // tokens x rows x cols >= detail::min_parallel_work, so that the row tasks do go to the pool.
    const Eigen::MatrixXf w = ptq_test::gaussian<Mat>(70, 256, 8, 0.05f);
    const ptq::RowMatrixXf x = activations(16, 256, 9), xr = activations(16, 250, 10);
    const Eigen::MatrixXf wr = ptq_test::gaussian<Mat>(80, 250, 11, 0.05f);
    static_assert(16 * 70 * 256 >= ptq::detail::min_parallel_work && 16 * 80 * 250 >= ptq::detail::min_parallel_work);
    using A8 = ptq::IntFormat<8, true>;
    check_same_for_thread_counts([&](Bytes& b) {
        const auto q4 = ptq::quantize<Int4, G32>(w);
        b.matrix(ptq::gemm(q4, x));
        const auto xq = ptq::quantize<A8>(x, ptq::QuantOptions{}, ptq::PerToken{});
        b.matrix(ptq::gemm(q4, xq));  // fused 32-blocks
        const auto q8r = ptq::quantize<ptq::IntFormat<8, false>>(wr, ptq::QuantOptions{}, ptq::PerGroup<>{10});
        b.matrix(ptq::gemm(q8r, ptq::quantize<A8>(xr, ptq::QuantOptions{}, ptq::PerToken{})));  // general path
        using M = ptq::MxInt<8, 32>;
        b.matrix(ptq::gemm(ptq::quantize<M>(w), ptq::quantize<M>(x)));
    });
}
