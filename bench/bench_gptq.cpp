// GPTQ and calibration-statistics benchmarks, with Eigen's SGEMM and (PTQ_BLAS builds) the
// BLAS's SGEMM / SSYRK of the same sizes, one thread, as the arithmetic reference in the same run.
// The last argument of BM_Hessian / BM_Gptq is ptq's thread count (ptq::set_num_threads; 0 =
// all cores), so one run shows the one-thread time and the speed-up on all cores.
//
//   cmake -S . -B build-gptq -G Ninja -DCMAKE_BUILD_TYPE=Release -DPTQ_BUILD_EXAMPLES=OFF
//   cmake --build build-gptq --target bench_gptq && build-gptq/bench/bench_gptq
//
// Counters: GFLOP/s = counted flops / time. GPTQ counts 2n^3/3 (Cholesky + triangular
// inverse of the n x n Hessian) + rows*n*(n - block) (the lazy-batch GEMMs, 2 flops per
// multiply-add) + rows*n*block (the in-block updates); the Hessian counts tokens*n^2 (the lower
// triangle of X^T X, 2 flops per multiply-add). Memory: peak RSS growth during one GPTQ call
// (VmHWM after resetting it through /proc/self/clear_refs), against the bound 3*|W| + |H|.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include <Eigen/Core>

#include <ptq/algo/gptq.hpp>
#include <ptq/algo/gptq_naive.hpp>
#include <ptq/metric/output_error.hpp>
#include <ptq/calib/calibration_stats.hpp>
#include <ptq/format/int_format.hpp>
#include <ptq/parallel.hpp>
#ifdef PTQ_USE_BLAS
#include <ptq/detail/blas.hpp>
#endif

#include "bench_threads.hpp"

namespace {

/// Sets ptq's thread count for one benchmark (0: all cores) and restores the previous one
/// afterwards (PTQ_THREADS, see bench_threads.hpp).
struct Threads {
    std::size_t previous = ptq::num_threads();
    explicit Threads(benchmark::State& state, std::size_t n) {
        ptq::set_num_threads(n);
        state.counters["threads"] = double(ptq::num_threads());
    }
    ~Threads() { ptq::set_num_threads(previous); }
};

using Int4 = ptq::IntFormat<4, false>;
using G128 = ptq::PerGroup<128>;

Eigen::MatrixXf random_matrix(Eigen::Index r, Eigen::Index c, unsigned seed, float sd = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, sd);
    Eigen::MatrixXf m(r, c);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = nd(rng);
    return m;
}

/// Correlated activations with a few outlier channels.
Eigen::MatrixXf make_acts(Eigen::Index tokens, Eigen::Index n, unsigned seed) {
    const Eigen::Index k = 64;
    Eigen::MatrixXf x =
        random_matrix(tokens, k, seed) * random_matrix(k, n, seed + 1, 0.3f) + random_matrix(tokens, n, seed + 2);
    for (Eigen::Index j = 7; j < n; j += 97) x.col(j) *= 20.0f;
    return x;
}

Eigen::MatrixXd hessian_of(const Eigen::MatrixXf& x) {
    ptq::CalibrationStats s(x.cols());
    s.add(x);
    return s.hessian();
}

double gptq_flops(double rows, double n, double block) {
    return 2.0 * n * n * n / 3.0 + rows * n * (n - block) + rows * n * block;
}

long read_status_kb(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    const std::string k(key);
    while (std::getline(f, line))
        if (line.compare(0, k.size(), k) == 0) return std::stol(line.substr(k.size() + 1));
    return -1;
}

void BM_Hessian(benchmark::State& state) {
    const Eigen::Index n = state.range(0), tokens = state.range(1);
    const auto prec = state.range(2) == 0 ? ptq::HessianPrecision::float_chunks : ptq::HessianPrecision::double_exact;
    const Threads threads(state, std::size_t(state.range(3)));
    const Eigen::MatrixXf x = random_matrix(tokens, n, 1);
    for (auto _ : state) {
        ptq::CalibrationStats s(n, {prec});
        for (Eigen::Index t = 0; t < tokens; t += 512)
            s.add(x.middleRows(t, std::min<Eigen::Index>(512, tokens - t)));  // 512-token samples
        benchmark::DoNotOptimize(s.hessian().data());
    }
    state.SetLabel(prec == ptq::HessianPrecision::float_chunks ? "float_chunks" : "double_exact");
    state.counters["GFLOP/s"] = benchmark::Counter(double(tokens) * double(n) * double(n) * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Hessian)
    ->Args({4096, 4096, 0, 1})
    ->Args({4096, 4096, 0, 0})
    ->Args({4096, 4096, 1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_Gptq(benchmark::State& state) {
    const Eigen::Index rows = state.range(0), n = state.range(1);
    const bool baseline = state.range(2) != 0;
    const Threads threads(state, std::size_t(state.range(3)));
    const Eigen::MatrixXf w = random_matrix(rows, n, 3, 0.02f);
    const Eigen::MatrixXd h = hessian_of(make_acts(n, n, 4));
    ptq::GptqOptions o;  // 4-bit asymmetric, group 128, act-order, block 128
    o.act_order = true;
    o.block_size = 128;
    o.rtn_baseline = baseline;
    const ptq::Gptq<Int4, G128> g(o);
    ptq::GptqDiagnostics d;
    for (auto _ : state) {
        auto r = g.quantize(w, h);
        benchmark::DoNotOptimize(r.dequantized.data());
        d = r.diagnostics;
    }
    state.SetLabel(baseline ? "int4-asym g128 act-order, +RTN baseline" : "int4-asym g128 act-order");
    state.counters["GFLOP/s"] = benchmark::Counter(gptq_flops(double(rows), double(n), 128.0) * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
    state.counters["damping"] = d.damping;
    state.counters["retries"] = d.retries;
    if (baseline) state.counters["damped_loss/damped_loss_rtn"] = d.damped_loss / d.damped_loss_rtn;
}
BENCHMARK(BM_Gptq)
    ->Args({4096, 4096, 0, 1})
    ->Args({4096, 4096, 0, 0})
    ->Args({4096, 4096, 1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

// Blocked vs the naive oracle on a small layer: the ratio is reported as a counter.
void BM_GptqBlockedVsNaive(benchmark::State& state) {
    const Eigen::Index n = state.range(0);
    const Eigen::MatrixXf w = random_matrix(n, n, 5, 0.02f);
    const Eigen::MatrixXd h = hessian_of(make_acts(2 * n, n, 6));
    ptq::GptqOptions o;
    o.act_order = true;
    o.rtn_baseline = false;
    double naive = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        auto r = ptq::gptq_naive<Int4, G128>(w, h, o);
        benchmark::DoNotOptimize(r.dequantized.data());
        naive = std::min(naive, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const ptq::Gptq<Int4, G128> g(o);
    double blocked = 1e30;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        auto r = g.quantize(w, h);
        benchmark::DoNotOptimize(r.dequantized.data());
        blocked = std::min(blocked, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    state.counters["naive_ms"] = naive * 1e3;
    state.counters["naive/blocked"] = naive / blocked;
}
BENCHMARK(BM_GptqBlockedVsNaive)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

// Peak extra memory of one GPTQ call (4096 x 4096), measured as the growth of the resident
// set's high-water mark (the call's big buffers are mmap'd, so they show in RSS).
void BM_GptqPeakMemory(benchmark::State& state) {
    const Eigen::Index n = state.range(0);
    const Eigen::MatrixXf w = random_matrix(n, n, 7, 0.02f);
    const Eigen::MatrixXd h = hessian_of(make_acts(n, n, 8));
    ptq::GptqOptions o;
    o.act_order = true;
    o.rtn_baseline = state.range(1) != 0;
    const ptq::Gptq<Int4, G128> g(o);
    double extra_mb = -1.0;
    for (auto _ : state) {
        {
            std::ofstream("/proc/self/clear_refs") << "5";  // reset VmHWM to the current RSS
        }
        const long before = read_status_kb("VmRSS:");
        {
            auto r = g.quantize(w, h);
            benchmark::DoNotOptimize(r.dequantized.data());
            const long peak = read_status_kb("VmHWM:");
            extra_mb = double(peak - before) / 1024.0;
        }
    }
    const double mb = 1.0 / (1024.0 * 1024.0);
    state.counters["peak_extra_MB"] = extra_mb;
    state.counters["W_MB"] = double(w.size() * 4) * mb;
    state.counters["H_MB"] = double(h.size() * 8) * mb;
    state.counters["bound_MB"] = double(3 * w.size() * 4 + h.size() * 8) * mb;
    state.SetLabel(o.rtn_baseline ? "+RTN baseline (result included)" : "result included");
}
BENCHMARK(BM_GptqPeakMemory)
    ->Args({4096, 0})
    ->Args({4096, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

void BM_EigenSgemm(benchmark::State& state) {
    const Eigen::Index n = state.range(0);
    const Eigen::MatrixXf a = random_matrix(n, n, 9), b = random_matrix(n, n, 10);
    Eigen::MatrixXf c(n, n);
    for (auto _ : state) {
        c.noalias() = a * b;
        benchmark::DoNotOptimize(c.data());
    }
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(n) * double(n) * double(n) * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_EigenSgemm)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

#ifdef PTQ_USE_BLAS
// The BLAS on one thread (ptq pins OpenBLAS to one thread; its threads are ptq's): C = A B,
// 2 n^3 flops.
void BM_BlasSgemm(benchmark::State& state) {
    const Eigen::Index n = state.range(0);
    const Eigen::MatrixXf a = random_matrix(n, n, 9), b = random_matrix(n, n, 10);
    Eigen::MatrixXf c(n, n);
    const Threads threads(state, 1);
    for (auto _ : state) {
        ptq::detail::gemm(c, a, false, b, false, 1.0f, 0.0f);
        benchmark::DoNotOptimize(c.data());
    }
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(n) * double(n) * double(n) * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_BlasSgemm)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

// SSYRK, lower triangle of X^T X for X [tokens x n] (what BM_Hessian computes, in float, in one
// call): tokens * n^2 flops (counted as BM_Hessian counts them).
void BM_BlasSsyrk(benchmark::State& state) {
    const Eigen::Index n = state.range(0), tokens = state.range(1);
    const Eigen::MatrixXf x = random_matrix(tokens, n, 1);
    Eigen::MatrixXf c(n, n);
    const Threads threads(state, 1);
    ptq::detail::gemm(c.topLeftCorner(1, 1), x.leftCols(1), true, x.leftCols(1), false, 1.0f,
                      0.0f);  // pins OpenBLAS to 1 thread
    for (auto _ : state) {
        cblas_ssyrk(CblasColMajor, CblasLower, CblasTrans, int(n), int(tokens), 1.0f, x.data(), int(tokens), 0.0f,
                    c.data(), int(n));
        benchmark::DoNotOptimize(c.data());
    }
    state.counters["GFLOP/s"] = benchmark::Counter(double(tokens) * double(n) * double(n) * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_BlasSsyrk)->Args({4096, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

}  // namespace

BENCHMARK_MAIN();
