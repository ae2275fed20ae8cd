#pragma once
// ptq's thread count in the benchmark programs: PTQ_THREADS=<n> in the environment calls
// ptq::set_num_threads(n) before the benchmarks run (unset: all cores, ptq's default), so one
// binary measures the one-thread time and the speed-up on all cores:
//   PTQ_THREADS=1 build/bench/bench_awq --benchmark_min_time=0.1
//   PTQ_THREADS=2 build/bench/bench_awq --benchmark_min_time=0.1
#include <cstdlib>
#include <string>

#include <ptq/parallel.hpp>

namespace ptq_bench {
inline const bool threads_from_environment = [] {
    if (const char* e = std::getenv("PTQ_THREADS")) ptq::set_num_threads(std::stoul(e));
    return true;
}();
}  // namespace ptq_bench
