// ptq::tool::Progress: the plain lines written when stderr is not a terminal (one per ~10 %,
// then a final line), the redraw throttling of the terminal line, and the ETA formatting.
#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "progress.hpp"

using ptq::tool::eta_seconds;
using ptq::tool::format_duration;
using ptq::tool::Progress;

namespace {
std::vector<std::string> lines(const std::string& s) {
    std::vector<std::string> v;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
}
}  // namespace

TEST_CASE("progress: durations and ETA") {
    CHECK(format_duration(0) == "0:00");
    CHECK(format_duration(59.4) == "0:59");
    CHECK(format_duration(59.6) == "1:00");
    CHECK(format_duration(754) == "12:34");
    CHECK(format_duration(3599) == "59:59");
    CHECK(format_duration(3600) == "1:00:00");
    CHECK(format_duration(36000 + 62) == "10:01:02");
    CHECK(format_duration(-1) == "?");
    CHECK(format_duration(1.0 / 0.0) == "?");
    // Mean rate so far: 10 s for 4 of 20 steps -> 2.5 s per step, 16 left -> 40 s.
    CHECK(eta_seconds(10, 4, 20) == doctest::Approx(40));
    CHECK(eta_seconds(10, 0, 20) < 0);  // unknown before the first step
    CHECK(eta_seconds(10, 20, 20) == 0);
    CHECK(format_duration(eta_seconds(10, 0, 20)) == "?");
}

TEST_CASE("progress: plain lines, one per tenth, then a final line") {
    std::ostringstream out;
    double now = 100.0;
    {
        Progress p("quantize layers", 20, out, /*tty=*/false, [&] { return now; });
        CHECK(out.str().empty());  // nothing until a tenth is passed
        for (int i = 1; i <= 20; ++i) {
            now += 2.0;
            p.advance();
        }
        p.done();
        p.done();  // once only
    }              // the destructor does not print again
    const auto l = lines(out.str());
    REQUIRE(l.size() == 10);  // 2/20 .. 18/20, then the final line
    CHECK(l[0] == "quantize layers: 2/20 (10%) elapsed 0:04 ETA 0:36");
    CHECK(l[4] == "quantize layers: 10/20 (50%) elapsed 0:20 ETA 0:20");
    CHECK(l[8] == "quantize layers: 18/20 (90%) elapsed 0:36 ETA 0:04");
    CHECK(l[9] == "quantize layers: done 20/20 in 0:40");
}

TEST_CASE("progress: plain mode with few steps, big jumps, overshoot and no explicit done()") {
    std::ostringstream out;
    double now = 0.0;
    {
        Progress p("eval", 3, out, false, [&] { return now; });
        now = 1;
        p.advance();  // 33 %
        now = 2;
        p.advance(5);  // capped at 3/3: the final line only
        CHECK(p.count() == 3);
    }
    const auto l = lines(out.str());
    REQUIRE(l.size() == 2);
    CHECK(l[0] == "eval: 1/3 (33%) elapsed 0:01 ETA 0:02");
    CHECK(l[1] == "eval: done 3/3 in 0:02");
}

TEST_CASE("progress: 1000 steps print 9 progress lines, not 1000") {
    std::ostringstream out;
    double now = 0.0;
    Progress p("capture", 1000, out, false, [&] { return now; });
    for (int i = 0; i < 1000; ++i) {
        now += 0.01;
        p.advance();
    }
    p.done();
    CHECK(lines(out.str()).size() == 10);
}

TEST_CASE("progress: the terminal line is redrawn in place at most every 0.1 s") {
    std::ostringstream out;
    double now = 0.0;
    Progress p("quantize", 4, out, /*tty=*/true, [&] { return now; });
    const std::string first = out.str();
    CHECK(first.front() == '\r');
    CHECK(first.find("quantize [>") != std::string::npos);
    CHECK(first.find("0/4") != std::string::npos);
    now = 0.05;
    p.advance();  // too soon after the first draw: nothing
    CHECK(out.str() == first);
    now = 5.0;
    p.advance();  // 2/4 after 5 s: ETA 5 s
    const std::string second = out.str().substr(first.size());
    CHECK(second.find("2/4") != std::string::npos);
    CHECK(second.find("[===============>") != std::string::npos);  // 15 of 30 filled
    CHECK(second.find("elapsed 0:05  ETA 0:05") != std::string::npos);
    CHECK(second.find('\n') == std::string::npos);
    now = 8.0;
    p.advance(2);
    p.done();
    const std::string all = out.str();
    CHECK(all.back() == '\n');
    CHECK(all.find("4/4  elapsed 0:08  done") != std::string::npos);
    CHECK(std::count(all.begin(), all.end(), '\n') == 1);
}
