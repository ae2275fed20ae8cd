#pragma once
// A read-only memory mapping of a whole file (POSIX mmap), RAII and move-only.
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ptq/error.hpp>

namespace ptq::io {

/// The bytes of a file, mapped read-only and shared (PROT_READ, MAP_SHARED). An empty file
/// maps to an empty span. The views handed out by the readers point into this mapping and
/// stay valid while the MappedFile lives. As with any mapping, truncating the file from another
/// process while it is mapped makes later accesses fault (SIGBUS): ptq cannot guard that.
class MappedFile {
public:
    MappedFile() = default;

    /// Maps `path`; throws ptq::file_error (field "open", "stat" or "mmap") on failure or when
    /// `path` is not a regular file.
    explicit MappedFile(const std::filesystem::path& path) : path_(path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail("open", errno);
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            const int e = errno;
            ::close(fd);
            fail("stat", e);
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd);
            throw file_error(path_.string(), "open", "not a regular file");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
            if (p == MAP_FAILED) {
                const int e = errno;
                ::close(fd);
                fail("mmap", e);
            }
            data_ = static_cast<const std::byte*>(p);
        }
        ::close(fd);  // the mapping keeps its own reference to the file
    }

    MappedFile(MappedFile&& o) noexcept
        : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    MappedFile& operator=(MappedFile&& o) noexcept {
        if (this != &o) {
            unmap();
            path_ = std::move(o.path_);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile() { unmap(); }

    std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
    std::size_t size() const noexcept { return size_; }
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    [[noreturn]] void fail(const char* field, int e) const {
        throw file_error(path_.string(), field, std::strerror(e));
    }
    void unmap() noexcept {
        if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
        data_ = nullptr;
        size_ = 0;
    }

    std::filesystem::path path_;
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace ptq::io
