#pragma once
// Writes a file all-or-nothing: into a temporary file in the destination directory, renamed
// over the destination by commit(). Without commit() (an exception, an early return) the
// temporary file is removed and the destination is left untouched. Bytes are appended with
// write() or placed at an offset with write_at() (pwrite), for writers that know the layout of
// the whole file in advance.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ptq/error.hpp>

namespace ptq::io {

class AtomicFile {
public:
    /// Creates `<dir>/.<name>.tmpXXXXXX` next to `path`; throws ptq::file_error (field "create").
    explicit AtomicFile(const std::filesystem::path& path) : path_(path) {
        std::filesystem::path dir = path.parent_path();
        if (dir.empty()) dir = ".";
        // Appended piece by piece: GCC 12's -Wrestrict misfires on `"." + std::string&&` at -O3.
        std::string name(1, '.');
        name += path.filename().string();
        name += ".tmpXXXXXX";
        std::string tmpl = (dir / name).string();
        fd_ = ::mkostemp(tmpl.data(), O_CLOEXEC);
        if (fd_ < 0) throw file_error(path_.string(), "create", std::strerror(errno));
        tmp_ = tmpl;
        ::fchmod(fd_, 0644);  // mkostemp creates 0600; a model file is world-readable like any output
    }
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    ~AtomicFile() {
        if (fd_ >= 0) ::close(fd_);
        if (!tmp_.empty()) ::unlink(tmp_.c_str());
    }

    /// Appends `bytes`; throws ptq::file_error (field "write") on a short write.
    void write(std::span<const std::byte> bytes) {
        const std::byte* p = bytes.data();
        std::size_t left = bytes.size();
        while (left > 0) {
            const ::ssize_t n = ::write(fd_, p, left);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) throw file_error(path_.string(), "write", n < 0 ? std::strerror(errno) : "short write");
            p += n;
            left -= static_cast<std::size_t>(n);
        }
        written_ += bytes.size();
    }
    void write(const void* p, std::size_t n) { write(std::span<const std::byte>(static_cast<const std::byte*>(p), n)); }
    /// Appends `n` zero bytes.
    void write_zeros(std::size_t n) {
        static constexpr std::byte zeros[64] = {};
        while (n > 0) {
            const std::size_t k = n < sizeof zeros ? n : sizeof zeros;
            write(std::span<const std::byte>(zeros, k));
            n -= k;
        }
    }
    /// Bytes appended so far by write() (write_at() does not count).
    std::size_t written() const noexcept { return written_; }

    /// Writes `bytes` at byte `offset` of the file (pwrite), leaving the append position and
    /// written() alone; throws ptq::file_error (field "write") on a short write.
    void write_at(std::uint64_t offset, std::span<const std::byte> bytes) {
        const std::byte* p = bytes.data();
        std::size_t left = bytes.size();
        while (left > 0) {
            const ::ssize_t n = ::pwrite(fd_, p, left, static_cast<::off_t>(offset));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) throw file_error(path_.string(), "write", n < 0 ? std::strerror(errno) : "short write");
            p += n;
            offset += static_cast<std::uint64_t>(n);
            left -= static_cast<std::size_t>(n);
        }
    }
    /// Sets the file size to `size` bytes (ftruncate): bytes beyond the old end read as zeros.
    void resize(std::uint64_t size) {
        if (::ftruncate(fd_, static_cast<::off_t>(size)) != 0)
            throw file_error(path_.string(), "write", std::strerror(errno));
    }

    /// Flushes, closes and renames the temporary file to the destination.
    void commit() {
        if (::fsync(fd_) != 0 && errno != EINVAL) throw file_error(path_.string(), "write", std::strerror(errno));
        const int rc = ::close(fd_);
        fd_ = -1;
        if (rc != 0) throw file_error(path_.string(), "write", std::strerror(errno));
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
            throw file_error(path_.string(), "rename", std::strerror(errno));
        tmp_.clear();
    }

private:
    std::filesystem::path path_;
    std::string tmp_;
    int fd_ = -1;
    std::size_t written_ = 0;
};

}  // namespace ptq::io
