#pragma once
// The thread count of ptq (one process-wide setting) and the pool that runs independent tasks.
//
// Determinism: every parallel loop in ptq is split into tasks whose boundaries do not depend on
// the thread count (fixed row / column / grid chunks), each task writes only its own outputs and
// no floating-point reduction crosses tasks except in task order. So the results are bit for bit
// the same whatever ptq::set_num_threads says. (Eigen parallelises its own GEMMs when compiled
// with OpenMP, with a blocking that depends on the thread count: compile with
// -DEIGEN_DONT_PARALLELIZE, or without OpenMP, to keep that guarantee.)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace ptq {

namespace detail {

/// A fixed set of worker threads running one loop at a time; the calling thread takes part.
/// A loop started from inside a task runs serially on that task's thread (no nesting).
class ThreadPool {
public:
    ThreadPool() = default;
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    ~ThreadPool() { resize(0); }

    /// True on a thread that is running a task of some pool.
    static bool& in_task() noexcept {
        thread_local bool flag = false;
        return flag;
    }

    /// Workers besides the caller.
    std::size_t workers() const noexcept { return threads_.size(); }

    /// Joins the current workers and starts `n` new ones (after the running loop, if any).
    void resize(std::size_t n) {
        std::lock_guard<std::mutex> one_loop(run_m_);
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
            published_.store(~std::size_t(0), std::memory_order_release);
        }
        cv_.notify_all();
        for (auto& t : threads_) t.join();
        threads_.clear();
        stop_ = false;
        published_.store(generation_, std::memory_order_release);
        for (std::size_t i = 0; i < n; ++i) threads_.emplace_back([this] { work(); });
    }

    /// Runs fn(i) for i in [0, n) with at most `threads` threads (the caller included); returns
    /// when all are done. If tasks throw, the exception of the lowest-numbered one is rethrown
    /// (the same one a serial loop would have thrown first, since the tasks are independent).
    void run(std::size_t n, std::size_t threads, const std::function<void(std::size_t)>& fn) {
        if (n == 0) return;
        if (threads <= 1 || n == 1 || in_task()) {
            for (std::size_t i = 0; i < n; ++i) fn(i);
            return;
        }
        std::unique_lock<std::mutex> one_loop(run_m_);  // loops from different user threads queue here
        if (threads_.empty()) {
            one_loop.unlock();
            for (std::size_t i = 0; i < n; ++i) fn(i);
            return;
        }
        Job job;
        job.fn = &fn;
        job.n = n;
        const std::size_t helpers = std::min({threads - 1, threads_.size(), n - 1});
        {
            std::lock_guard<std::mutex> lk(m_);
            job_ = &job;
            wanted_ = helpers;
            ++generation_;
            published_.store(generation_, std::memory_order_release);
        }
        cv_.notify_all();
        execute(job);
        std::unique_lock<std::mutex> lk(m_);
        done_cv_.wait(lk, [&] { return job.active == 0 && wanted_ == 0; });
        job_ = nullptr;
        lk.unlock();
        if (job.error) std::rethrow_exception(job.error);
    }

private:
    struct Job {
        const std::function<void(std::size_t)>* fn = nullptr;
        std::size_t n = 0;
        std::atomic<std::size_t> next{0};
        std::size_t active = 0;  // helpers inside execute (guarded by m_)
        std::mutex err_m;
        std::exception_ptr error;
        std::size_t error_index = 0;
    };

    static void execute(Job& job) {
        in_task() = true;
        for (std::size_t i; (i = job.next.fetch_add(1)) < job.n;) {
            try {
                (*job.fn)(i);
            } catch (...) {
                std::lock_guard<std::mutex> lk(job.err_m);
                if (!job.error || i < job.error_index) {
                    job.error = std::current_exception();
                    job.error_index = i;
                }
            }
        }
        in_task() = false;
    }

    void work() {
        std::size_t seen = 0;
        std::unique_lock<std::mutex> lk(m_);
        for (;;) {
            if (!stop_ && generation_ == seen) {
                // Spin for up to spin_time before sleeping: loops often follow each other within
                // microseconds (a row loop per layer, per GPTQ block), and waking a sleeping
                // thread costs tens of microseconds on some machines (virtual CPUs). The wait
                // below re-checks the state under the lock, so the spin only saves the sleep.
                lk.unlock();
                const auto until = std::chrono::steady_clock::now() + spin_time;
                while (published_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < until)
                    for (int k = 0; k < 64; ++k) cpu_relax();
                lk.lock();
            }
            cv_.wait(lk, [&] { return stop_ || (generation_ != seen && wanted_ > 0); });
            if (stop_) return;
            seen = generation_;
            --wanted_;
            Job& job = *job_;
            ++job.active;
            lk.unlock();
            execute(job);
            lk.lock();
            --job.active;
            if (job.active == 0 && wanted_ == 0) done_cv_.notify_all();
        }
    }

    std::vector<std::thread> threads_;
    std::mutex m_, run_m_;
    std::condition_variable cv_, done_cv_;
    Job* job_ = nullptr;
    std::size_t wanted_ = 0;  // helpers still to join the current job
    std::size_t generation_ = 0;
    std::atomic<std::size_t> published_{0};  // generation_ (or ~0 on stop), for the spin without the lock
    bool stop_ = false;
    static constexpr std::chrono::microseconds spin_time{100};

    static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield");
#endif
    }
};

inline std::size_t hardware_threads() noexcept {
    const unsigned h = std::thread::hardware_concurrency();
    return h == 0 ? 1 : h;
}

inline std::atomic<std::size_t>& thread_setting() noexcept {
    static std::atomic<std::size_t> n{hardware_threads()};
    return n;
}

inline ThreadPool& thread_pool() {
    static ThreadPool pool;
    return pool;
}

}  // namespace detail

/// Sets the number of threads every ptq algorithm may use (the caller's thread included):
/// n >= 1, or 0 for all cores (std::thread::hardware_concurrency(), the default). Results do
/// not depend on it. Takes effect for loops started afterwards.
inline void set_num_threads(std::size_t n) noexcept {
    detail::thread_setting().store(n == 0 ? detail::hardware_threads() : n);
}

/// The number of threads ptq's algorithms use (>= 1).
inline std::size_t num_threads() noexcept { return detail::thread_setting().load(); }

namespace detail {

/// Runs fn(i) for i in [0, n) on up to num_threads() threads. The tasks must be independent
/// (each writes only its own outputs); their number and boundaries must not depend on the
/// thread count. An exception of a task is rethrown (the lowest-numbered one).
template <class Fn>
void parallel_for(std::size_t n, Fn&& fn) {
    const std::size_t t = std::min(num_threads(), n);
    if (t <= 1 || ThreadPool::in_task()) {
        for (std::size_t i = 0; i < n; ++i) fn(i);
        return;
    }
    ThreadPool& pool = thread_pool();
    {
        static std::mutex resize_m;
        std::lock_guard<std::mutex> lk(resize_m);
        if (pool.workers() < t - 1) pool.resize(t - 1);
    }
    const std::function<void(std::size_t)> f = [&fn](std::size_t i) { fn(i); };
    pool.run(n, t, f);
}

/// Work (in multiply-adds or comparable element operations) below which a loop is not worth
/// handing to the pool: about 20-50 us of one core, the order of a worker's wake-up and
/// hand-back on virtual CPUs.
inline constexpr std::size_t min_parallel_work = std::size_t(1) << 18;

/// parallel_for(n, fn) when `work` >= min_parallel_work, else the same tasks in order on the
/// calling thread. The tasks, and so the results, are the same either way.
template <class Fn>
void parallel_for(std::size_t n, std::size_t work, Fn&& fn) {
    if (work < min_parallel_work) {
        for (std::size_t i = 0; i < n; ++i) fn(i);
        return;
    }
    parallel_for(n, std::forward<Fn>(fn));
}

}  // namespace detail
}  // namespace ptq
