#include "progress.hpp"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <utility>

#include <unistd.h>

namespace ptq::tool {

namespace {
constexpr int bar_width = 30;
constexpr double redraw_interval = 0.1;  // seconds between two terminal redraws

double steady_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "?";
    const auto s = static_cast<std::uint64_t>(std::llround(seconds));
    char buf[48];
    if (s < 3600) std::snprintf(buf, sizeof buf, "%u:%02u", unsigned(s / 60), unsigned(s % 60));
    else
        std::snprintf(buf, sizeof buf, "%llu:%02u:%02u", static_cast<unsigned long long>(s / 3600),
                      unsigned(s / 60 % 60), unsigned(s % 60));
    return buf;
}

double eta_seconds(double elapsed, std::uint64_t done, std::uint64_t total) {
    if (done == 0) return -1.0;
    if (done >= total) return 0.0;
    return elapsed / static_cast<double>(done) * static_cast<double>(total - done);
}

Progress::Progress(std::string label, std::uint64_t total)
    : Progress(std::move(label), total, std::cerr, ::isatty(STDERR_FILENO) == 1) {}

Progress::Progress(std::string label, std::uint64_t total, std::ostream& out, bool tty, Clock clock)
    : label_(std::move(label)), total_(total), out_(out), tty_(tty), clock_(clock ? std::move(clock) : steady_seconds) {
    start_ = clock_();
    if (tty_) draw(false);
}

Progress::~Progress() {
    try {
        done();
    } catch (...) {  // a destructor must not throw (a failed write to stderr is not worth dying for)
    }
}

void Progress::advance(std::uint64_t k) {
    if (finished_) return;
    done_ = k > total_ - done_ ? total_ : done_ + k;
    const double now = clock_();
    if (tty_) {
        if (now - last_draw_ >= redraw_interval) draw(false);
        return;
    }
    // Plain mode: a line whenever done_ reaches the next tenth (several tenths at once print once).
    if (total_ > 0 && done_ < total_ && done_ * 10 >= next_decile_ * total_) {
        draw(false);
        next_decile_ = done_ * 10 / total_ + 1;
    }
}

void Progress::done() {
    if (finished_) return;
    finished_ = true;
    draw(true);
}

void Progress::draw(bool final) {
    const double now = clock_();
    last_draw_ = now;
    const double elapsed = now - start_;
    const std::string count = std::to_string(done_) + "/" + std::to_string(total_);
    if (!tty_) {
        if (final) out_ << label_ << ": done " << count << " in " << format_duration(elapsed) << '\n';
        else
            out_ << label_ << ": " << count << " (" << done_ * 100 / total_ << "%) elapsed " << format_duration(elapsed)
                 << " ETA " << format_duration(eta_seconds(elapsed, done_, total_)) << '\n';
        out_.flush();
        return;
    }
    const int filled = total_ == 0 ? bar_width : static_cast<int>(done_ * bar_width / total_);
    std::string bar(static_cast<std::size_t>(bar_width), ' ');
    for (int i = 0; i < filled; ++i) bar[static_cast<std::size_t>(i)] = '=';
    if (filled < bar_width) bar[static_cast<std::size_t>(filled)] = '>';
    out_ << '\r' << label_ << " [" << bar << "] " << count << "  elapsed " << format_duration(elapsed);
    if (final) out_ << "  done\x1b[K\n";
    else out_ << "  ETA " << format_duration(eta_seconds(elapsed, done_, total_)) << "\x1b[K";
    out_.flush();
}

}  // namespace ptq::tool
