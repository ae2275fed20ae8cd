#pragma once
// Helpers of the ptq::io tests: a scratch directory, byte builders written from the format
// specifications (independent of the writers under test), and exception checks.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <ptq/error.hpp>

namespace ptq_io_test {

/// An empty directory under the test's working directory, removed at the end.
struct ScratchDir {
    std::filesystem::path path;
    explicit ScratchDir(const std::string& name) : path(std::filesystem::absolute("ptq_io_scratch") / name) {
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::filesystem::path operator/(const std::string& f) const { return path / f; }
    std::size_t file_count() const {
        std::size_t n = 0;
        for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(path)) ++n;
        return n;
    }
};

/// Little-endian byte builder.
struct Bytes {
    std::vector<std::byte> b;
    template <class T>
    Bytes& put(T v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        b.insert(b.end(), p, p + sizeof v);
        return *this;
    }
    Bytes& raw(const std::string& s) {
        const auto* p = reinterpret_cast<const std::byte*>(s.data());
        b.insert(b.end(), p, p + s.size());
        return *this;
    }
    Bytes& str(const std::string& s) {  // GGUF string: u64 length + bytes
        put(std::uint64_t(s.size()));
        return raw(s);
    }
    Bytes& zeros(std::size_t n) {
        b.insert(b.end(), n, std::byte{0});
        return *this;
    }
    Bytes& pad_to(std::size_t a) { return zeros((a - b.size() % a) % a); }
};

inline std::vector<std::byte> random_bytes(std::size_t n, std::uint32_t seed) {
    std::mt19937 g(seed);
    std::vector<std::byte> v(n);
    for (auto& x : v) x = static_cast<std::byte>(g() & 0xFF);
    return v;
}

inline std::vector<std::byte> floats_bytes(const std::vector<float>& f) {
    std::vector<std::byte> v(f.size() * 4);
    std::memcpy(v.data(), f.data(), v.size());
    return v;
}

/// Runs `f`, which must throw ptq::file_error whose message contains `fragment`; returns the error.
template <class F>
ptq::file_error expect_file_error(F&& f, const std::string& fragment) {
    try {
        f();
    } catch (const ptq::file_error& e) {
        INFO("message: " << e.what());
        CHECK(std::string(e.what()).find(fragment) != std::string::npos);
        return e;
    }
    FAIL("no ptq::file_error thrown (expected '" << fragment << "')");
    return ptq::file_error("", "", "");
}

}  // namespace ptq_io_test
