// touch_memory MIB: allocates MIB MiB and writes every page, so that its peak resident memory
// is MIB MiB plus the program's own few MiB (the known load of peak_rss's own test).
#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
    const long mib = argc == 2 ? std::strtol(argv[1], nullptr, 10) : -1;
    if (mib <= 0) {
        std::fprintf(stderr, "usage: touch_memory MIB\n");
        return 2;
    }
    const std::size_t n = static_cast<std::size_t>(mib) << 20;
    auto* p = static_cast<volatile unsigned char*>(std::malloc(n));
    if (p == nullptr) return 1;
    for (std::size_t i = 0; i < n; i += 4096) p[i] = static_cast<unsigned char>(i >> 12);
    unsigned sum = 0;
    for (std::size_t i = 0; i < n; i += 4096) sum += p[i];
    std::printf("touched %ld MiB (checksum %u)\n", mib, sum);
    std::free(const_cast<unsigned char*>(p));
    return 0;
}
