// ptq demo: quantize an LLM-like synthetic weight matrix to every format x granularity and
// print a table (format, granularity, effective bits, MSE, SQNR) with dequantization speed.
//
// The matrix imitates a transformer linear layer W [out x in]: Student-t(4) entries (heavy
// tails, like trained weights) scaled by 0.02, and a few input channels (columns) 20-50x larger
// (the outlier channels of LLM.int8() / SmoothQuant).
//
// Usage: ptq_demo [rows cols]   (default 1024 x 1024)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include <ptq/ptq.hpp>

namespace {

ptq::RowMatrixXf make_llm_like(std::size_t rows, std::size_t cols, unsigned seed) {
    std::mt19937 gen(seed);
    std::student_t_distribution<float> t(4.0f);
    ptq::RowMatrixXf w(rows, cols);
    for (Eigen::Index i = 0; i < w.rows(); ++i)
        for (Eigen::Index j = 0; j < w.cols(); ++j) w(i, j) = 0.02f * t(gen);
    std::uniform_int_distribution<std::size_t> col(0, cols - 1);
    std::uniform_real_distribution<float> boost(20.0f, 50.0f);
    for (int k = 0; k < 6 && cols > 0; ++k) w.col(static_cast<Eigen::Index>(col(gen))) *= boost(gen);
    return w;
}

template <class F, class G>
void row(const ptq::RowMatrixXf& w, const G& g, const std::string& gran_name) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto q = ptq::quantize<F>(w, {}, g);
    const double tq = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ptq::RowMatrixXf d;
    ptq::dequantize_into(q, d);
    // Dequantization throughput: repeat until ~50 ms have passed.
    int reps = 0;
    const auto t1 = std::chrono::steady_clock::now();
    double td = 0.0;
    do {
        ptq::dequantize_into(q, d);
        ++reps;
        td = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    } while (td < 0.05);
    const double out_bytes = double(w.size()) * sizeof(float) * reps;
    std::printf("%-16s %-14s %6.3f  %10.3e  %7.2f  %8.2f  %8.1f\n", F::name().c_str(), gran_name.c_str(),
                ptq::effective_bits(q), ptq::mse(w, d), ptq::sqnr_db(w, d), out_bytes / td / 1e9,
                double(w.size()) / tq / 1e6);
}

template <class F>
void all_granularities(const ptq::RowMatrixXf& w) {
    row<F>(w, ptq::PerTensor{}, "per-tensor");
    row<F>(w, ptq::PerChannel{}, "per-channel");
    row<F>(w, ptq::PerGroup<128>{}, "group-128");
    row<F>(w, ptq::PerGroup<32>{}, "group-32");
}

template <class F>
void mx(const ptq::RowMatrixXf& w) {
    row<F>(w, ptq::PerGroup<F::block>{}, "block-" + std::to_string(F::block));
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t rows = 1024, cols = 1024;
    if (argc == 3) {
        rows = std::strtoul(argv[1], nullptr, 10);
        cols = std::strtoul(argv[2], nullptr, 10);
    } else if (argc != 1) {
        std::fprintf(stderr, "usage: %s [rows cols]\n", argv[0]);
        return 2;
    }
    if (rows == 0 || cols == 0) {
        std::fprintf(stderr, "rows and cols must be positive\n");
        return 2;
    }
    const auto w = make_llm_like(rows, cols, 42);
    std::printf("ptq demo: LLM-like weight %zux%zu (Student-t(4) x 0.02, 6 outlier input channels x20-50)\n", rows,
                cols);
    std::printf("effective bits count an fp16 scale (+ fp16 zero if asymmetric) per group, 8 bits per MX block\n\n");
    std::printf("%-16s %-14s %6s  %10s  %7s  %8s  %8s\n", "format", "granularity", "bits", "MSE", "SQNR dB", "deq GB/s",
                "q Melem/s");
    using namespace ptq;
    all_granularities<IntFormat<8, true>>(w);
    all_granularities<IntFormat<8, false>>(w);
    all_granularities<IntFormat<4, true>>(w);
    all_granularities<IntFormat<4, false>>(w);
    all_granularities<IntFormat<3, false>>(w);
    all_granularities<IntFormat<2, false>>(w);
    all_granularities<Fp8<4, 3>>(w);
    all_granularities<Fp8<5, 2>>(w);
    mx<MxInt<8, 32>>(w);
    mx<MxInt<4, 32>>(w);
    mx<MxInt<4, 16>>(w);
    mx<MxFp<4, 3, 32>>(w);
    mx<MxFp<3, 2, 32>>(w);
    mx<MxFp<2, 3, 32>>(w);
    mx<MxFp<2, 1, 32>>(w);
    std::printf("\ndeq GB/s: fp32 output bytes per second of dequantize_into (SIMD arch: %s)\n",
                xsimd::default_arch::name());
    return 0;
}
