// peak_rss [--min-mib A] [--max-mib B] -- COMMAND [ARGS...]
// Runs COMMAND (fork + execvp), waits for it and prints its peak resident set size
// (getrusage(RUSAGE_CHILDREN).ru_maxrss, KiB on Linux, shown in MiB) on stderr. Exit status:
// the command's own if it failed (128 + signal if it was killed), 3 if its peak is above B MiB
// or below A MiB, 2 for a usage error or a command that cannot be started, else 0.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {
[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "peak_rss: %s\nusage: peak_rss [--min-mib A] [--max-mib B] -- COMMAND [ARGS...]\n", why);
    std::exit(2);
}
double parse_mib(const char* s) {
    char* end = nullptr;
    const double v = std::strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= 0)) usage("bad MiB value");
    return v;
}
}  // namespace

int main(int argc, char** argv) {
    double min_mib = 0, max_mib = -1;
    int i = 1;
    for (; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--") break;
        if (i + 1 >= argc) usage("missing value");
        if (a == "--min-mib") min_mib = parse_mib(argv[++i]);
        else if (a == "--max-mib") max_mib = parse_mib(argv[++i]);
        else usage("unknown option");
    }
    if (i >= argc - 1) usage("missing -- COMMAND");
    char** cmd = argv + i + 1;

    const pid_t pid = ::fork();
    if (pid < 0) usage(std::strerror(errno));
    if (pid == 0) {
        ::execvp(cmd[0], cmd);
        std::fprintf(stderr, "peak_rss: cannot run '%s': %s\n", cmd[0], std::strerror(errno));
        std::_Exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) usage(std::strerror(errno));
    struct rusage ru {};
    ::getrusage(RUSAGE_CHILDREN, &ru);
    const double mib = static_cast<double>(ru.ru_maxrss) / 1024.0;
    std::fprintf(stderr, "peak_rss: %.1f MiB peak resident memory of '%s'", mib, cmd[0]);
    if (max_mib >= 0) std::fprintf(stderr, " (bound %.1f MiB)", max_mib);
    std::fprintf(stderr, "\n");
    if (WIFSIGNALED(status)) {
        std::fprintf(stderr, "peak_rss: '%s' was killed by signal %d\n", cmd[0], WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    if (WEXITSTATUS(status) == 127) return 2;
    if (WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "peak_rss: '%s' exited with status %d\n", cmd[0], WEXITSTATUS(status));
        return WEXITSTATUS(status);
    }
    if (max_mib >= 0 && mib > max_mib) {
        std::fprintf(stderr, "peak_rss: %.1f MiB is above the bound of %.1f MiB\n", mib, max_mib);
        return 3;
    }
    if (mib < min_mib) {
        std::fprintf(stderr, "peak_rss: %.1f MiB is below the expected minimum of %.1f MiB\n", mib, min_mib);
        return 3;
    }
    return 0;
}
