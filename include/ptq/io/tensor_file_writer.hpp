#pragma once
// The common part of the streaming tensor-file writers (SafetensorsStreamWriter,
// GgufStreamWriter): a file whose layout is known in advance (header bytes, then every declared
// tensor at a fixed offset), written into a temporary file next to the destination. The header
// and the file size are written at construction; write() places one tensor's bytes at its
// offset (pwrite), in any order, each tensor once and with exactly its declared byte count;
// commit() checks that every tensor was written and renames the file over the destination.
// Destroyed without commit(), the temporary file is removed. Memory: names and offsets only.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ptq/error.hpp>
#include <ptq/io/atomic_file.hpp>

namespace ptq::io {

/// Where everything of a tensor file goes, computed from the declarations alone.
struct TensorFileLayout {
    std::vector<std::byte> header;      ///< bytes [0, header.size()) of the file
    std::vector<std::string> names;     ///< declared tensors, distinct
    std::vector<std::uint64_t> offset;  ///< per tensor: byte offset in the file
    std::vector<std::uint64_t> nbytes;  ///< per tensor: byte count
    std::uint64_t file_size = 0;        ///< padding included
};

namespace detail {
/// Throws ptq::file_error (field "tensor '<name>': data") unless `given` == `needed` bytes.
inline void check_tensor_bytes(const std::string& file, const std::string& name, std::uint64_t given,
                               std::uint64_t needed) {
    if (given != needed)
        throw file_error(file, "tensor '" + name + "': data",
                         std::to_string(given) + " bytes given, the shape needs " + std::to_string(needed));
}

/// The bytes of the file of `layout` with `data[i]` as tensor i (the in-memory writers).
inline std::vector<std::byte> assemble_tensor_file(TensorFileLayout layout,
                                                   std::span<const std::span<const std::byte>> data) {
    std::vector<std::byte> out = std::move(layout.header);
    out.resize(static_cast<std::size_t>(layout.file_size));
    for (std::size_t i = 0; i < data.size(); ++i) {
        check_tensor_bytes("<memory>", layout.names[i], data[i].size(), layout.nbytes[i]);
        if (!data[i].empty()) std::memcpy(out.data() + layout.offset[i], data[i].data(), data[i].size());
    }
    return out;
}
}  // namespace detail

class TensorFileWriter {
public:
    /// Creates the temporary file next to `path`, writes the header and sizes the file
    /// (ptq::file_error, field "create" or "write", on failure).
    TensorFileWriter(const std::filesystem::path& path, TensorFileLayout layout)
        : layout_(std::move(layout)), file_name_(path.string()), written_(layout_.names.size(), false), file_(path) {
        for (std::size_t i = 0; i < layout_.names.size(); ++i) index_.emplace(layout_.names[i], i);
        file_.write(layout_.header);
        file_.resize(layout_.file_size);
        layout_.header = {};  // on disk now
    }

    /// Number of declared tensors.
    std::size_t size() const noexcept { return layout_.names.size(); }
    /// Index of the declared tensor `name`; throws ptq::file_error if it was not declared.
    std::size_t index(std::string_view name) const {
        const auto it = index_.find(name);
        if (it == index_.end()) throw file_error(file_name_, "tensor '" + std::string(name) + "'", "was not declared");
        return it->second;
    }
    /// Byte count of declared tensor i, and its offset in the file.
    std::uint64_t nbytes(std::size_t i) const { return layout_.nbytes.at(i); }
    std::uint64_t file_offset(std::size_t i) const { return layout_.offset.at(i); }
    /// Size of the finished file.
    std::uint64_t file_size() const noexcept { return layout_.file_size; }

    /// Writes the bytes of declared tensor i. Throws ptq::file_error: index out of range, tensor
    /// already written, byte count not the declared one, already committed, an I/O error.
    void write(std::size_t i, std::span<const std::byte> bytes) {
        if (committed_) throw file_error(file_name_, "write", "the file was already committed");
        if (i >= size())
            throw file_error(file_name_, "tensor #" + std::to_string(i),
                             "index out of range (" + std::to_string(size()) + " tensors declared)");
        if (written_[i]) throw file_error(file_name_, "tensor '" + layout_.names[i] + "'", "written twice");
        detail::check_tensor_bytes(file_name_, layout_.names[i], bytes.size(), layout_.nbytes[i]);
        file_.write_at(layout_.offset[i], bytes);
        written_[i] = true;
    }
    void write(std::string_view name, std::span<const std::byte> bytes) { write(index(name), bytes); }

    /// Checks that every declared tensor was written, then flushes and renames the file.
    void commit() {
        if (committed_) throw file_error(file_name_, "commit", "the file was already committed");
        for (std::size_t i = 0; i < size(); ++i)
            if (!written_[i])
                throw file_error(file_name_, "tensor '" + layout_.names[i] + "'", "declared but never written");
        committed_ = true;
        file_.commit();
    }

private:
    TensorFileLayout layout_;
    std::string file_name_;
    std::vector<bool> written_;
    std::map<std::string, std::size_t, std::less<>> index_;
    bool committed_ = false;
    AtomicFile file_;
};

}  // namespace ptq::io
