#pragma once
// Progress of a long step of the ptq command (calibration capture, per-layer quantization,
// evaluation), on stderr:
//   * on a terminal: one line redrawn in place (carriage return) at most ~10 times a second,
//       "quantize layers [=========>          ]  12/32  elapsed 0:41  ETA 1:08"
//     and a final line ending with a newline at done();
//   * otherwise (a log file, a pipe): one plain line each time another ~10 % is passed,
//       "quantize layers: 4/32 (12%) elapsed 0:14 ETA 1:38"
//     and a final "quantize layers: done 32/32 in 1:49".
// The ETA is elapsed / done * (total - done): the mean rate so far, shown once a step is done.
// The clock and the output stream are injectable for tests.
#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

namespace ptq::tool {

/// "m:ss" below an hour, "h:mm:ss" above; negative or non-finite seconds as "?".
std::string format_duration(double seconds);

/// Seconds left at the mean rate so far: elapsed / done * (total - done); negative (unknown)
/// while nothing is done.
double eta_seconds(double elapsed, std::uint64_t done, std::uint64_t total);

class Progress {
public:
    using Clock = std::function<double()>;  ///< seconds, monotonic

    /// Writes to std::cerr, as a terminal line if stderr is a terminal.
    Progress(std::string label, std::uint64_t total);
    /// Writes to `out`; `tty` selects the redrawn line; `clock` gives the time in seconds.
    Progress(std::string label, std::uint64_t total, std::ostream& out, bool tty, Clock clock = {});
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;
    /// Calls done() if it was not called.
    ~Progress();

    /// Records `k` more steps done (capped at the total).
    void advance(std::uint64_t k = 1);
    /// Prints the final line (once).
    void done();

    std::uint64_t count() const noexcept { return done_; }
    std::uint64_t total() const noexcept { return total_; }

private:
    void draw(bool final);
    std::string label_;
    std::uint64_t total_;
    std::uint64_t done_ = 0;
    std::ostream& out_;
    bool tty_;
    Clock clock_;
    double start_ = 0.0;
    double last_draw_ = -1.0;
    std::uint64_t next_decile_ = 1;  // plain mode: next multiple of total/10 to report
    bool finished_ = false;
};

}  // namespace ptq::tool
