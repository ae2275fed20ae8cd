// AWQ and SmoothQuant benchmarks (ptq's threads: PTQ_THREADS, see bench_threads.hpp).
//   BM_AwqScaleSearch: the 20-point alpha search of a 4096 x 4096 layer on 512 calibration
//     tokens at group 128 (INT4 asymmetric), without the clipping step;
//   BM_AwqFull: the same plus the per-group clipping search;
//   BM_OutputGemm: one output evaluation X * D^T (512 x 4096 x 4096), the floor of one alpha;
//   BM_SmoothQuantScales: SmoothQuant's scales for a q/k/v group (3 x 4096 x 4096).
// Counters: GFLOP/s counts 2 * tokens * in * out per alpha (the output GEMMs) — the work
// that dominates the search.
//
// Run: ./build/bench/bench_awq --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <random>

#include <ptq/algo/awq.hpp>
#include <ptq/algo/smooth_quant.hpp>
#include <ptq/ptq.hpp>

#include "bench_threads.hpp"

namespace {

using ptq::RowMatrixXf;

RowMatrixXf gaussian(Eigen::Index r, Eigen::Index c, unsigned seed, float sd) {
    std::mt19937 g(seed);
    std::normal_distribution<float> n(0.0f, sd);
    RowMatrixXf m(r, c);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = n(g);
    return m;
}

struct Layer {
    RowMatrixXf x, w;
};
const Layer& layer() {
    static const Layer l = [] {
        Layer v{gaussian(512, 4096, 1, 1.0f), gaussian(4096, 4096, 2, 0.02f)};
        for (Eigen::Index j : {7, 300, 1999, 4000}) v.x.col(j) *= 40.0f;
        return v;
    }();
    return l;
}

void awq_bench(benchmark::State& state, bool clip) {
    const auto& l = layer();
    ptq::AwqOptions o;
    o.clip_search = clip;
    const ptq::Awq<ptq::IntFormat<4, false>, ptq::PerGroup<128>> awq(o);
    double loss = 0.0, rtn = 0.0;
    for (auto _ : state) {
        const auto r = awq.compute(l.x, ptq::linears(l.w));
        loss = r.output_mse;
        rtn = r.output_mse_rtn;
        benchmark::DoNotOptimize(r.scales.data());
    }
    const double flops = 2.0 * 512.0 * 4096.0 * 4096.0 * o.grid;
    state.counters["GFLOP/s"] =
        benchmark::Counter(flops * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
    state.counters["loss/rtn"] = loss / rtn;
}
void BM_AwqScaleSearch(benchmark::State& s) { awq_bench(s, false); }
void BM_AwqFull(benchmark::State& s) { awq_bench(s, true); }
BENCHMARK(BM_AwqScaleSearch)->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK(BM_AwqFull)->Unit(benchmark::kSecond)->Iterations(1);

void BM_OutputGemm(benchmark::State& state) {
    const auto& l = layer();
    RowMatrixXf y(512, 4096);
    for (auto _ : state) {
        y.noalias() = l.x * l.w.transpose();
        benchmark::DoNotOptimize(y.data());
    }
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * 512 * 4096.0 * 4096.0 * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_OutputGemm)->Unit(benchmark::kMillisecond)->MinTime(1.0);

void BM_SmoothQuantScales(benchmark::State& state) {
    const auto& l = layer();
    const RowMatrixXf wk = gaussian(4096, 4096, 3, 0.02f), wv = gaussian(4096, 4096, 4, 0.02f);
    const Eigen::VectorXf amax = l.x.cwiseAbs().colwise().maxCoeff().transpose();
    const ptq::SmoothQuant sq;
    for (auto _ : state) benchmark::DoNotOptimize(sq.scales(amax, ptq::linears(l.w, wk, wv)).data());
    state.counters["weight GB/s"] =
        benchmark::Counter(3.0 * 4096 * 4096 * 4.0 * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SmoothQuantScales)->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
