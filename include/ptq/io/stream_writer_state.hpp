#pragma once
// The bookkeeping shared by the streaming file writers (SafetensorsStreamWriter,
// GgufStreamWriter): which declared tensor has which name, which were written, and the checks
// of write() and commit().
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ptq/error.hpp>

namespace ptq::io::detail {

/// Throws ptq::file_error (field "tensor '<name>': data") unless `given` == `needed` bytes.
inline void check_tensor_bytes(const std::string& file, const std::string& name, std::uint64_t given,
                               std::uint64_t needed) {
    if (given != needed)
        throw file_error(file, "tensor '" + name + "': data",
                         std::to_string(given) + " bytes given, the shape needs " + std::to_string(needed));
}

/// The names of declared tensors (any entry type with a `name`).
template <class Entry>
std::vector<std::string> entry_names(std::span<const Entry> entries) {
    std::vector<std::string> v;
    v.reserve(entries.size());
    for (const auto& e : entries) v.push_back(e.name);
    return v;
}

class StreamWriterState {
public:
    /// `names` are the declared tensors, already checked to be distinct.
    StreamWriterState(std::string file, std::vector<std::string> names)
        : file_(std::move(file)), names_(std::move(names)), written_(names_.size(), false) {
        for (std::size_t i = 0; i < names_.size(); ++i) index_.emplace(names_[i], i);
    }
    const std::string& file() const noexcept { return file_; }
    std::size_t size() const noexcept { return names_.size(); }
    /// Index of the declared tensor `name`; throws ptq::file_error if it was not declared.
    std::size_t index(std::string_view name) const {
        const auto it = index_.find(name);
        if (it == index_.end()) throw file_error(file_, "tensor '" + std::string(name) + "'", "was not declared");
        return it->second;
    }
    /// Checks that tensor i may be written now with `given` bytes (declared, not written yet,
    /// `needed` bytes, not committed).
    void check_write(std::size_t i, std::uint64_t given, std::uint64_t needed) const {
        if (committed_) throw file_error(file_, "write", "the file was already committed");
        if (i >= names_.size())
            throw file_error(file_, "tensor #" + std::to_string(i),
                             "index out of range (" + std::to_string(names_.size()) + " tensors declared)");
        if (written_[i]) throw file_error(file_, "tensor '" + names_[i] + "'", "written twice");
        check_tensor_bytes(file_, names_[i], given, needed);
    }
    /// Records that tensor i was written (after check_write and the write itself).
    void mark_written(std::size_t i) { written_.at(i) = true; }
    /// Checks that every declared tensor was written; afterwards no write is accepted.
    void check_commit() {
        if (committed_) throw file_error(file_, "commit", "the file was already committed");
        for (std::size_t i = 0; i < names_.size(); ++i)
            if (!written_[i]) throw file_error(file_, "tensor '" + names_[i] + "'", "declared but never written");
        committed_ = true;
    }

private:
    std::string file_;
    std::vector<std::string> names_;
    std::vector<bool> written_;
    std::map<std::string, std::size_t, std::less<>> index_;
    bool committed_ = false;
};

}  // namespace ptq::io::detail
