#pragma once
// The llama2.c loaders read from a path: the fuzz input is written to a per-process file
// (on /dev/shm when it exists: no disk traffic at a million executions).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include <unistd.h>

inline const std::filesystem::path& fuzz_input_path() {
    static const std::filesystem::path p = [] {
        const std::filesystem::path dir =
            std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
        return dir / ("ptq_fuzz_" + std::to_string(::getpid()) + ".bin");
    }();
    return p;
}

inline const std::filesystem::path& write_fuzz_input(const std::uint8_t* data, std::size_t size) {
    const auto& p = fuzz_input_path();
    std::FILE* f = std::fopen(p.c_str(), "wb");
    if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) __builtin_trap();
    return p;
}
