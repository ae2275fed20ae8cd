// ptq kernel benchmarks: dequantize (fused unpack + scale), RTN quantize (range + params +
// encode + pack), each against memcpy of the fp32 output size in the same run.
//
// Counters:
//   bytes_per_second  fp32 bytes produced (dequant, memcpy) or consumed (quantize) per second;
//   cyc/32            TSC cycles per 32 values;  elem/cyc  values per TSC cycle.
// Cycles = thread CPU time (CLOCK_THREAD_CPUTIME_ID, so time spent descheduled on a busy
// machine is not counted) x the TSC frequency, which is measured at start-up with rdtsc
// against std::chrono::steady_clock and printed in the context ("tsc_ghz"). These are
// reference cycles at the nominal clock: under turbo the core runs faster than the TSC.
// Only the calling thread is counted: run with PTQ_THREADS=1 (bench_threads.hpp) for cycles.
// bytes_per_second is computed from CPU time as well (no UseRealTime).
//
// Sizes: 16 KiB (in L1), 1 MiB (L2) and 256 MiB (DRAM) of fp32 output, rows of 4096 values.
#include <ptq/kernel/kernels.hpp>  // first: see ptq/kernel/xsimd.hpp

#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <x86intrin.h>

#include <ptq/algo/rtn.hpp>
#include <ptq/format/int_format.hpp>
#include <ptq/format/minifloat.hpp>
#include <ptq/format/mx_fp.hpp>
#include <ptq/format/mx_int.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/reference.hpp>
#include <ptq/quantized_matrix.hpp>

#include "bench_threads.hpp"

namespace {

using namespace ptq;

constexpr std::size_t kCols = 4096;
constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

double g_tsc_hz = 0.0;

/// Reference cycles of this thread so far: thread CPU time x TSC frequency.
std::uint64_t cycles_now() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<std::uint64_t>((double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9) * g_tsc_hz);
}

double measure_tsc_hz() {
    using clk = std::chrono::steady_clock;
    const auto t0 = clk::now();
    const std::uint64_t c0 = __rdtsc();
    while (clk::now() - t0 < std::chrono::milliseconds(100)) {
    }
    const std::uint64_t c1 = __rdtsc();
    const double s = std::chrono::duration<double>(clk::now() - t0).count();
    return double(c1 - c0) / s;
}

std::vector<float> random_matrix(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

void set_counters(benchmark::State& st, std::uint64_t cycles, std::size_t values_per_iter, std::size_t bytes_per_iter) {
    const double values = double(st.iterations()) * double(values_per_iter);
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(bytes_per_iter));
    st.counters["cyc/32"] = double(cycles) / (values / 32.0);
    st.counters["elem/cyc"] = values / double(cycles);
}

// ---- memcpy of the fp32 output size --------------------------------------------------------
void BM_memcpy(benchmark::State& st) {
    const std::size_t bytes = static_cast<std::size_t>(st.range(0));
    std::vector<float> src(bytes / 4, 1.0f), dst(bytes / 4, 0.0f);
    const std::uint64_t c0 = cycles_now();
    for (auto _ : st) {
        std::memcpy(dst.data(), src.data(), bytes);
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
    }
    set_counters(st, cycles_now() - c0, bytes / 4, bytes);
}

// ---- dequantize: packed -> fp32 ---------------------------------------------------------------
template <class F, class G, bool Reference, class Arch = xsimd::default_arch>
void BM_dequant(benchmark::State& st) {
    const std::size_t bytes = static_cast<std::size_t>(st.range(0));
    const std::size_t rows = bytes / 4 / kCols;
    const auto w = random_matrix(rows * kCols, 7);
    const Eigen::Map<const RowMatrixXf> m(w.data(), static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(kCols));
    const QuantizedMatrix<F> q = Rtn<F, G>({}, G{}).quantize(m);
    std::vector<float> out(rows * kCols);
    const std::uint64_t c0 = cycles_now();
    for (auto _ : st) {
        for (std::size_t r = 0; r < rows; ++r) {
            if constexpr (Reference)
                ref::dequantize_row<F>(q.row_data(r), q.layout(), q.row_params(r), out.data() + r * kCols);
            else kernel::dequantize_row<F, Arch>(q.row_data(r), q.layout(), q.row_params(r), out.data() + r * kCols);
        }
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    set_counters(st, cycles_now() - c0, rows * kCols, rows * kCols * 4);
}

// ---- RTN quantize: fp32 -> QuantizedMatrix (range, params, encode, pack) ----------------------
template <class F, class G, class Arch = xsimd::default_arch>
void BM_rtn(benchmark::State& st) {
    const std::size_t bytes = static_cast<std::size_t>(st.range(0));
    const std::size_t rows = bytes / 4 / kCols;
    const auto w = random_matrix(rows * kCols, 11);
    const Eigen::Map<const RowMatrixXf> m(w.data(), static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(kCols));
    const Rtn<F, G, Arch> rtn({}, G{});
    const std::uint64_t c0 = cycles_now();
    for (auto _ : st) {
        auto q = rtn.quantize(m);
        benchmark::DoNotOptimize(q.packed().data());
        benchmark::ClobberMemory();
    }
    set_counters(st, cycles_now() - c0, rows * kCols, rows * kCols * 4);
}

using G32 = PerGroup<32>;
using Int2 = IntFormat<2, false>;
using Int3 = IntFormat<3, false>;
using Int4 = IntFormat<4, false>;
using Int5 = IntFormat<5, false>;
using Int8 = IntFormat<8, false>;
using Int8Sym = IntFormat<8, true>;  // ggml Q8_0's numerics class: absmax scale, no zero point
using MxInt4 = MxInt<4, 32>;
using MxInt8 = MxInt<8, 32>;
using E4M3 = Fp8<4, 3>;
using MxFp4 = MxFp<2, 1, 32>;
#if XSIMD_WITH_AVX2
using Avx2 = xsimd::avx2;  // the 8-lane width, measured beside the default (widest) one
#else
using Avx2 = xsimd::default_arch;
#endif

void sizes_all(benchmark::internal::Benchmark* b) { b->Arg(16 * KiB)->Arg(1 * MiB)->Arg(256 * MiB)->MinTime(0.2); }
void sizes_cache(benchmark::internal::Benchmark* b) { b->Arg(16 * KiB)->Arg(1 * MiB)->MinTime(0.2); }
void size_l2(benchmark::internal::Benchmark* b) { b->Arg(1 * MiB)->MinTime(0.2); }

}  // namespace

BENCHMARK(BM_memcpy)->Apply(sizes_all);
BENCHMARK(BM_dequant<Int4, G32, false>)->Name("dequant/int4_g32")->Apply(sizes_all);
BENCHMARK(BM_dequant<Int4, G32, true>)->Name("dequant_reference/int4_g32")->Apply(sizes_cache);
BENCHMARK(BM_dequant<Int2, G32, false>)->Name("dequant/int2_g32")->Apply(size_l2);
BENCHMARK(BM_dequant<Int3, G32, false>)->Name("dequant/int3_g32")->Apply(size_l2);
BENCHMARK(BM_dequant<Int5, G32, false>)->Name("dequant/int5_g32")->Apply(size_l2);
BENCHMARK(BM_dequant<Int8, G32, false>)->Name("dequant/int8_g32")->Apply(sizes_all);
BENCHMARK(BM_dequant<MxInt4, G32, false>)->Name("dequant/mxint4")->Apply(size_l2);
BENCHMARK(BM_dequant<MxInt8, G32, false>)->Name("dequant/mxint8")->Apply(size_l2);
BENCHMARK(BM_dequant<E4M3, G32, false>)->Name("dequant/fp8e4m3_g32")->Apply(size_l2);
BENCHMARK(BM_dequant<MxFp4, G32, false>)->Name("dequant/mxfp4")->Apply(size_l2);
BENCHMARK(BM_dequant<Int4, G32, false, Avx2>)->Name("dequant_avx2/int4_g32")->Apply(sizes_all);
BENCHMARK(BM_dequant<Int8, G32, false, Avx2>)->Name("dequant_avx2/int8_g32")->Apply(sizes_all);
BENCHMARK(BM_dequant<MxInt4, G32, false, Avx2>)->Name("dequant_avx2/mxint4")->Apply(size_l2);
BENCHMARK(BM_dequant<MxInt8, G32, false, Avx2>)->Name("dequant_avx2/mxint8")->Apply(size_l2);
BENCHMARK(BM_dequant<MxFp4, G32, false, Avx2>)->Name("dequant_avx2/mxfp4")->Apply(size_l2);
BENCHMARK(BM_rtn<Int4, G32>)->Name("rtn/int4_g32")->Apply(sizes_all);
BENCHMARK(BM_rtn<Int2, G32>)->Name("rtn/int2_g32")->Apply(size_l2);
BENCHMARK(BM_rtn<Int3, G32>)->Name("rtn/int3_g32")->Apply(size_l2);
BENCHMARK(BM_rtn<Int5, G32>)->Name("rtn/int5_g32")->Apply(size_l2);
BENCHMARK(BM_rtn<Int8, G32>)->Name("rtn/int8_g32")->Apply(sizes_all);
BENCHMARK(BM_rtn<Int8Sym, G32>)->Name("rtn/int8sym_g32")->Apply(size_l2);
BENCHMARK(BM_rtn<MxInt4, G32>)->Name("rtn/mxint4")->Apply(size_l2);
BENCHMARK(BM_rtn<MxInt8, G32>)->Name("rtn/mxint8")->Apply(size_l2);
BENCHMARK(BM_rtn<E4M3, G32>)->Name("rtn/fp8e4m3_g32")->Apply(size_l2);
BENCHMARK(BM_rtn<MxFp4, G32>)->Name("rtn/mxfp4")->Apply(size_l2);
BENCHMARK(BM_rtn<Int4, G32, Avx2>)->Name("rtn_avx2/int4_g32")->Apply(sizes_all);
BENCHMARK(BM_rtn<Int8, G32, Avx2>)->Name("rtn_avx2/int8_g32")->Apply(sizes_all);
BENCHMARK(BM_rtn<Int8Sym, G32, Avx2>)->Name("rtn_avx2/int8sym_g32")->Apply(size_l2);
BENCHMARK(BM_rtn<E4M3, G32, Avx2>)->Name("rtn_avx2/fp8e4m3_g32")->Apply(size_l2);
BENCHMARK(BM_rtn<MxInt4, G32, Avx2>)->Name("rtn_avx2/mxint4")->Apply(size_l2);
BENCHMARK(BM_rtn<MxInt8, G32, Avx2>)->Name("rtn_avx2/mxint8")->Apply(size_l2);
BENCHMARK(BM_rtn<MxFp4, G32, Avx2>)->Name("rtn_avx2/mxfp4")->Apply(size_l2);

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    const double hz = g_tsc_hz = measure_tsc_hz();
    benchmark::AddCustomContext("tsc_ghz", std::to_string(hz / 1e9));
    benchmark::AddCustomContext("simd_arch", xsimd::default_arch::name());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
