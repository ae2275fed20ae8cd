// LQER benchmarks: rank-32 correction of an n x n quantization-error matrix with the
// randomised SVD versus Eigen's BDCSVD, and the low-rank inference helper versus the dense
// product. Counters: error_ratio = ||E - E_k(randomised)||_F / ||E - E_k(exact)||_F
// (computed once outside the timed loop), GFLOP/s of the dense product.
//
// Run: ./build/bench/bench_lqer --benchmark_counters_tabular=true
// (the exact 4096 x 4096 SVD takes about a minute: filter it out with
//  --benchmark_filter='-.*Exact.*4096' when in a hurry)
#include <benchmark/benchmark.h>

#include <map>
#include <random>

#include <ptq/algo/lqer.hpp>
#include <ptq/algo/svd.hpp>
#include <ptq/ptq.hpp>

#include "bench_threads.hpp"

namespace {

// The RTN error of a Gaussian "weight" matrix (4-bit asymmetric, group 128): the matrix LQER
// actually decomposes.
const Eigen::MatrixXf& error_matrix(Eigen::Index n) {
    static std::map<Eigen::Index, Eigen::MatrixXf> cache;
    auto it = cache.find(n);
    if (it != cache.end()) return it->second;
    std::mt19937 g(1);
    std::normal_distribution<float> d(0.0f, 0.02f);
    ptq::RowMatrixXf w(n, n);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = d(g);
    const Eigen::MatrixXf e = w - ptq::fake_quantize<ptq::IntFormat<4, false>>(w, {}, ptq::PerGroup<128>{});
    return cache.emplace(n, e).first->second;
}

double rank_k_error(const Eigen::MatrixXf& e, const ptq::TruncatedSvd& s) {
    return (e - s.U * s.S.asDiagonal() * s.V.transpose()).norm();
}

void BM_RandomizedSvdRank32(benchmark::State& state) {
    const auto& e = error_matrix(state.range(0));
    for (auto _ : state) benchmark::DoNotOptimize(ptq::randomized_svd(e, 32));
    state.counters["rank_k_error"] = rank_k_error(e, ptq::randomized_svd(e, 32));
}
BENCHMARK(BM_RandomizedSvdRank32)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->MinTime(1.0);

void BM_ExactSvdRank32(benchmark::State& state) {
    const auto& e = error_matrix(state.range(0));
    ptq::TruncatedSvd s;
    for (auto _ : state) {
        s = ptq::exact_svd(e, 32);
        benchmark::DoNotOptimize(s.S.data());
    }
    const double exact = rank_k_error(e, s);
    state.counters["rank_k_error"] = exact;
    state.counters["error_ratio_rsvd"] = rank_k_error(e, ptq::randomized_svd(e, 32)) / exact;
}
BENCHMARK(BM_ExactSvdRank32)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->Iterations(1);

// Inference: Y = X Q^T (dense baseline) versus Y = X Q^T + (X B^T) A^T (rank 32).
void lqer_forward_bench(benchmark::State& state, bool low_rank) {
    const Eigen::Index n = state.range(0), tokens = 512, k = 32;
    std::mt19937 g(2);
    std::normal_distribution<float> d(0.0f, 1.0f);
    ptq::RowMatrixXf x(tokens, n), w(n, n);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = d(g);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = 0.02f * d(g);
    ptq::LqerOptions o;
    o.rank = k;
    o.scaled = false;
    o.svd = ptq::SvdMethod::randomized;
    const auto r = ptq::Lqer<ptq::IntFormat<4, false>, ptq::PerGroup<128>>(o).compute(w);
    ptq::RowMatrixXf y;
    for (auto _ : state) {
        if (low_rank) y = ptq::lqer_forward(x, r);
        else y.noalias() = x * r.weight_dequantized.transpose();
        benchmark::DoNotOptimize(y.data());
    }
    const double flops = 2.0 * double(tokens) * double(n) * double(n) * (low_rank ? 1.0 + r.extra_macs_ratio() : 1.0);
    state.counters["GFLOP/s"] =
        benchmark::Counter(flops * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
    state.counters["extra_macs_ratio"] = low_rank ? r.extra_macs_ratio() : 0.0;
}
void BM_DenseForward(benchmark::State& s) { lqer_forward_bench(s, false); }
void BM_LqerForwardRank32(benchmark::State& s) { lqer_forward_bench(s, true); }
BENCHMARK(BM_DenseForward)->Arg(4096)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_LqerForwardRank32)->Arg(4096)->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
