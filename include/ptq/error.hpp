#pragma once
// ptq's exception types. Every error names the argument that is wrong.
#include <stdexcept>
#include <string>
#include <utility>

namespace ptq {

/// Base class of every exception thrown by ptq.
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// An argument has a wrong shape, size, value or option (message names the argument).
class invalid_argument : public error {
public:
    using error::error;
};

/// An input holds NaN or Inf where the chosen policy does not accept it.
class non_finite_error : public invalid_argument {
public:
    using invalid_argument::invalid_argument;
};

/// A file cannot be read or written, or its content is malformed or hostile (truncated,
/// oversized, overlapping, misaligned, lying header). The message names the file and the field;
/// file() and field() give them separately.
class file_error : public error {
public:
    file_error(std::string file, std::string field, const std::string& what)
        : error("ptq: file '" + file + "': " + field + ": " + what), file_(std::move(file)), field_(std::move(field)) {}
    const std::string& file() const noexcept { return file_; }
    const std::string& field() const noexcept { return field_; }

private:
    std::string file_;
    std::string field_;
};

namespace detail {
[[noreturn]] inline void throw_invalid(const std::string& fn, const std::string& arg, const std::string& what) {
    throw invalid_argument("ptq::" + fn + ": argument '" + arg + "': " + what);
}
[[noreturn]] inline void throw_non_finite(const std::string& fn, const std::string& arg, const std::string& where) {
    throw non_finite_error("ptq::" + fn + ": argument '" + arg + "' holds NaN or Inf (" + where +
                           "); use NonFinite::propagate to get NaN outputs instead");
}
}  // namespace detail
}  // namespace ptq
