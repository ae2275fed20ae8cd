// ptq gemv benchmarks: y = W^ x straight from the packed weights (ptq::gemv), per format,
// against baselines in the same run: dequantize-then-Eigen-gemv, an Eigen float gemv of the
// same shape, memcpy of the packed bytes, and a read-only SIMD sum of the packed bytes (the
// machine's read bandwidth: memcpy also writes).
//
// Integer activations: gemv_a8/... and gemv_mx/... are ptq::gemv (activation preparation
// included), int_dot/... the row kernel alone (kernel::int_dot_row over all rows with the
// activation row prepared once, as a per-row vec_dot is measured), at the default arch and at
// xsimd::avx2 (suffix _avx2). Cycles per 32 weights = t/32 x the TSC frequency.
//
// Counters:
//   bytes_per_second  weight bytes read per second: packed codes + group parameters as
//                     stored (QuantizedMatrix::storage_bytes); for the Eigen float gemv the
//                     fp32 matrix; for memcpy the packed bytes copied;
//   t/32              time per 32 weights (Google Benchmark prints it with an SI prefix).
// Sizes: 16 KiB (in cache), 1 MiB and 256 MiB (DRAM) of packed codes, rows of 4096 weights.
// The dequantize and float baselines stop at 1 MiB of packed codes (at 256 MiB their fp32
// matrices would need 2 GiB and more). Short rows (gemv_short/*, a small model's shapes):
// 256 rows of 64, 172 and 288 weights (groups of 32, the last one partial at 172 and 288),
// against the Eigen float gemv of the same shape. The weights are random codes with random
// parameters: the speed does not depend on the values.
#include <ptq/gemv.hpp>  // first: see ptq/kernel/xsimd.hpp

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include <ptq/format/int_format.hpp>
#include <ptq/format/int_min_format.hpp>
#include <ptq/format/mx_fp.hpp>
#include <ptq/format/mx_int.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/quantize.hpp>
#include <ptq/quantized_matrix.hpp>

#include "bench_threads.hpp"

namespace {

using namespace ptq;

constexpr std::size_t kCols = 4096;
constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

/// A rows x cols QuantizedMatrix<F> (groups of 32) of random codes and plausible random parameters.
template <class F>
QuantizedMatrix<F> random_matrix(std::size_t rows, std::size_t cols, unsigned seed) {
    QuantizedMatrix<F> q(PerGroup<32>{}.layout(rows, cols));
    std::mt19937_64 rng(seed);
    auto bytes = q.packed();
    for (std::size_t i = 0; i + 8 <= bytes.size(); i += 8) {
        const std::uint64_t r = rng();
        std::memcpy(bytes.data() + i, &r, 8);
    }
    for (auto& p : q.params()) {
        if constexpr (F::kind == FormatKind::integer) {
            p.scale = 0.01f + float(rng() % 100) * 1e-4f;
            if constexpr (!F::symmetric) p.zero = std::int32_t(rng() % (F::levels + 1));
        } else if constexpr (F::kind == FormatKind::integer_min) {
            p.scale = 0.01f + float(rng() % 100) * 1e-4f;
            p.min = -0.1f - float(rng() % 100) * 1e-3f;
        } else {
            p.scale_byte = static_cast<std::uint8_t>(110 + rng() % 10);
        }
    }
    return q;
}

/// A rows x kCols random_matrix holding `packed` bytes of codes.
template <class F>
QuantizedMatrix<F> random_weights(std::size_t packed, unsigned seed) {
    return random_matrix<F>(packed / ptq::packed_bytes(kCols, F::bits), kCols, seed);
}

Eigen::VectorXf random_x(unsigned seed, std::size_t n = kCols) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    Eigen::VectorXf x(static_cast<Eigen::Index>(n));
    for (auto& v : x) v = nd(rng);
    return x;
}

void set_counters(benchmark::State& st, std::size_t values, std::size_t bytes) {
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * bytes));
    st.counters["t/32"] = benchmark::Counter(double(values) / 32.0, benchmark::Counter::kIsIterationInvariantRate |
                                                                        benchmark::Counter::kInvert);
}

// ---- fused: float activations ------------------------------------------------------------------
template <class F>
void BM_gemv(benchmark::State& st) {
    const auto q = random_weights<F>(static_cast<std::size_t>(st.range(0)), 1);
    const Eigen::VectorXf x = random_x(2);
    for (auto _ : st) {
        Eigen::VectorXf y = gemv(q, x);
        benchmark::DoNotOptimize(y.data());
    }
    set_counters(st, q.size(), q.storage_bytes());
}

// ---- short rows: fused gemv and the Eigen float gemv of the same shape -----------------------------
constexpr std::size_t kShortRows = 256;

template <class F>
void BM_gemv_short(benchmark::State& st) {
    const std::size_t cols = static_cast<std::size_t>(st.range(0));
    const auto q = random_matrix<F>(kShortRows, cols, 8);
    const Eigen::VectorXf x = random_x(9, cols);
    for (auto _ : st) {
        Eigen::VectorXf y = gemv(q, x);
        benchmark::DoNotOptimize(y.data());
    }
    set_counters(st, q.size(), q.storage_bytes());
}

void BM_eigen_float_short(benchmark::State& st) {
    const std::size_t cols = static_cast<std::size_t>(st.range(0));
    const RowMatrixXf w = RowMatrixXf::Random(static_cast<Eigen::Index>(kShortRows), static_cast<Eigen::Index>(cols));
    const Eigen::VectorXf x = random_x(10, cols);
    Eigen::VectorXf y(static_cast<Eigen::Index>(kShortRows));
    for (auto _ : st) {
        y.noalias() = w * x;
        benchmark::DoNotOptimize(y.data());
    }
    set_counters(st, kShortRows * cols, kShortRows * cols * sizeof(float));
}

// ---- fused: quantized activations (integer dot products) ---------------------------------------
template <class F, class A, class Arch = xsimd::default_arch>
void BM_gemv_int(benchmark::State& st) {
    const auto q = random_weights<F>(static_cast<std::size_t>(st.range(0)), 3);
    const Eigen::RowVectorXf x = random_x(4).transpose();
    QuantizedMatrix<A> xq;
    if constexpr (A::is_mx) xq = quantize<A>(x, QuantOptions{}, PerGroup<A::block>{});
    else xq = quantize<A>(x, QuantOptions{}, PerToken{});
    for (auto _ : st) {
        Eigen::VectorXf y = gemv<F, A, Arch>(q, xq);
        benchmark::DoNotOptimize(y.data());
    }
    set_counters(st, q.size(), q.storage_bytes());
}

// ---- the fused integer row kernel alone (one thread) ---------------------------------------------
template <class F, class A, class Arch>
void BM_int_dot(benchmark::State& st) {
    const auto q = random_weights<F>(static_cast<std::size_t>(st.range(0)), 3);
    const Eigen::RowVectorXf x = random_x(4).transpose();
    QuantizedMatrix<A> xq;
    if constexpr (A::is_mx) xq = quantize<A>(x, QuantOptions{}, PerGroup<A::block>{});
    else xq = quantize<A>(x, QuantOptions{}, PerToken{});
    std::vector<std::int8_t> qa(kCols);
    std::vector<std::int32_t> lane(kCols / 4);
    kernel::prepare_int_acts<F, A>(xq.row_data(0), kCols, qa.data(), lane.data());
    std::vector<float> y(q.rows());
    for (auto _ : st) {
        for (std::size_t o = 0; o < q.rows(); ++o)
            y[o] = kernel::int_dot_row<F, A, Arch>(q.row_data(o), q.layout(), q.row_params(o), qa.data(), lane.data(),
                                                   xq.row_params(0));
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    set_counters(st, q.size(), q.storage_bytes());
}

// ---- baseline: dequantize (SIMD kernel) then Eigen gemv ------------------------------------------
template <class F>
void BM_dequant_eigen(benchmark::State& st) {
    const auto q = random_weights<F>(static_cast<std::size_t>(st.range(0)), 5);
    const Eigen::VectorXf x = random_x(6);
    RowMatrixXf w;
    Eigen::VectorXf y;
    for (auto _ : st) {
        dequantize_into(q, w);
        y.noalias() = w * x;
        benchmark::DoNotOptimize(y.data());
    }
    set_counters(st, q.size(), q.storage_bytes());
}

// ---- baseline: Eigen float gemv of the same shape -------------------------------------------------
void BM_eigen_float(benchmark::State& st) {
    const std::size_t rows = static_cast<std::size_t>(st.range(0)) / ptq::packed_bytes(kCols, 4);  // int4's shape
    const RowMatrixXf w = RowMatrixXf::Random(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(kCols));
    const Eigen::VectorXf x = random_x(7);
    Eigen::VectorXf y(static_cast<Eigen::Index>(rows));
    for (auto _ : st) {
        y.noalias() = w * x;
        benchmark::DoNotOptimize(y.data());
    }
    set_counters(st, rows * kCols, rows * kCols * sizeof(float));
}

// ---- baseline: memcpy of the packed bytes -----------------------------------------------------------
void BM_memcpy(benchmark::State& st) {
    const std::size_t bytes = static_cast<std::size_t>(st.range(0));
    std::vector<std::uint8_t> src(bytes, 1), dst(bytes, 0);
    for (auto _ : st) {
        std::memcpy(dst.data(), src.data(), bytes);
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
    }
    set_counters(st, bytes * 2, bytes);  // "values": int4 codes in those bytes
}

// ---- baseline: read-only, a SIMD sum of 64-bit words over the packed bytes --------------------------
void BM_read(benchmark::State& st) {
    using B = xsimd::batch<std::uint64_t>;
    const std::size_t bytes = static_cast<std::size_t>(st.range(0)), n = bytes / sizeof(std::uint64_t);
    std::vector<std::uint64_t> src(n, 1);
    for (auto _ : st) {
        B a0(0), a1(0), a2(0), a3(0);  // four independent chains
        std::size_t i = 0;
        for (; i + 4 * B::size <= n; i += 4 * B::size) {
            a0 += B::load_unaligned(src.data() + i);
            a1 += B::load_unaligned(src.data() + i + B::size);
            a2 += B::load_unaligned(src.data() + i + 2 * B::size);
            a3 += B::load_unaligned(src.data() + i + 3 * B::size);
        }
        std::uint64_t r = xsimd::hadd((a0 + a1) + (a2 + a3));
        for (; i < n; ++i) r += src[i];
        benchmark::DoNotOptimize(r);
    }
    set_counters(st, bytes * 2, bytes);  // "values": int4 codes in those bytes
}

using Int4 = IntFormat<4, false>;
using Int4s = IntFormat<4, true>;
using Int8 = IntFormat<8, true>;
using MxInt8 = MxInt<8, 32>;

void sizes_all(benchmark::internal::Benchmark* b) { b->Arg(16 * KiB)->Arg(1 * MiB)->Arg(256 * MiB)->MinTime(0.2); }
void sizes_cache(benchmark::internal::Benchmark* b) { b->Arg(16 * KiB)->Arg(1 * MiB)->MinTime(0.2); }
void short_cols(benchmark::internal::Benchmark* b) { b->Arg(64)->Arg(172)->Arg(288)->MinTime(0.2); }

}  // namespace

BENCHMARK(BM_memcpy)->Apply(sizes_all);
BENCHMARK(BM_read)->Apply(sizes_all);
BENCHMARK(BM_eigen_float)->Name("eigen_float_gemv/int4_shape")->Apply(sizes_cache);
BENCHMARK(BM_gemv<Int4>)->Name("gemv/int4_g32")->Apply(sizes_all);
BENCHMARK(BM_dequant_eigen<Int4>)->Name("dequant_eigen/int4_g32")->Apply(sizes_cache);
BENCHMARK(BM_gemv<Int8>)->Name("gemv/int8_g32")->Apply(sizes_all);
BENCHMARK(BM_dequant_eigen<Int8>)->Name("dequant_eigen/int8_g32")->Apply(sizes_cache);
BENCHMARK(BM_gemv<MxFp4>)->Name("gemv/mxfp4")->Apply(sizes_all);
BENCHMARK(BM_dequant_eigen<MxFp4>)->Name("dequant_eigen/mxfp4")->Apply(sizes_cache);
BENCHMARK(BM_gemv<IntMinFormat<4>>)->Name("gemv/q4_1_g32")->Apply(sizes_cache);
BENCHMARK(BM_eigen_float_short)->Name("gemv_short/eigen_float")->Apply(short_cols);
BENCHMARK(BM_gemv_short<Int4s>)->Name("gemv_short/int4sym_g32")->Apply(short_cols);
BENCHMARK(BM_gemv_short<Int8>)->Name("gemv_short/int8_g32")->Apply(short_cols);
BENCHMARK(BM_gemv_short<IntMinFormat<4>>)->Name("gemv_short/q4_1_g32")->Apply(short_cols);
BENCHMARK(BM_gemv_short<MxFp4>)->Name("gemv_short/mxfp4")->Apply(short_cols);
BENCHMARK(BM_gemv_int<Int4, IntFormat<8, true>>)->Name("gemv_a8/int4_g32")->Apply(sizes_all);
BENCHMARK(BM_gemv_int<Int4s, IntFormat<8, true>>)->Name("gemv_a8/int4sym_g32")->Apply(sizes_cache);
BENCHMARK(BM_gemv_int<Int8, IntFormat<8, true>>)->Name("gemv_a8/int8_g32")->Apply(sizes_all);
BENCHMARK(BM_gemv_int<MxInt8, MxInt8>)->Name("gemv_mx/mxint8")->Apply(sizes_all);
BENCHMARK(BM_dequant_eigen<MxInt8>)->Name("dequant_eigen/mxint8")->Apply(sizes_cache);
#if XSIMD_WITH_AVX2
using Avx2 = xsimd::avx2;
using Def = xsimd::default_arch;
BENCHMARK(BM_gemv_int<Int4, Int8, Avx2>)->Name("gemv_a8/int4_g32_avx2")->Apply(sizes_all);
BENCHMARK(BM_gemv_int<Int8, Int8, Avx2>)->Name("gemv_a8/int8_g32_avx2")->Apply(sizes_all);
BENCHMARK(BM_gemv_int<MxInt8, MxInt8, Avx2>)->Name("gemv_mx/mxint8_avx2")->Apply(sizes_all);
BENCHMARK(BM_int_dot<Int4, Int8, Def>)->Name("int_dot/int4_g32")->Apply(sizes_all);
BENCHMARK(BM_int_dot<Int4s, Int8, Def>)->Name("int_dot/int4sym_g32")->Apply(sizes_cache);
BENCHMARK(BM_int_dot<Int8, Int8, Def>)->Name("int_dot/int8_g32")->Apply(sizes_all);
BENCHMARK(BM_int_dot<MxInt8, MxInt8, Def>)->Name("int_dot/mxint8")->Apply(sizes_all);
BENCHMARK(BM_int_dot<Int4, Int8, Avx2>)->Name("int_dot/int4_g32_avx2")->Apply(sizes_all);
BENCHMARK(BM_int_dot<Int8, Int8, Avx2>)->Name("int_dot/int8_g32_avx2")->Apply(sizes_all);
BENCHMARK(BM_int_dot<MxInt8, MxInt8, Avx2>)->Name("int_dot/mxint8_avx2")->Apply(sizes_all);
#endif

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    benchmark::AddCustomContext("simd_arch", xsimd::default_arch::name());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
