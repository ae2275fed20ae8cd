// libFuzzer target: the GGUF reader on arbitrary bytes. Every input must either load (then
// every key/value and tensor is visited, F32/F16/BF16 tensors converted) or throw a ptq::error.
#include <cstddef>
#include <cstdint>
#include <span>
#include <variant>

#include <ptq/io/gguf.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        const ptq::io::GgufFile f(bytes, "fuzz.gguf");
        volatile std::size_t sink = 0;
        for (const auto& [k, v] : f.kv()) sink = sink + k.size() + v.array_size() + std::size_t(v.element_type());
        for (const auto& t : f.tensors()) {
            const auto v = f.tensor(t);
            if (v.data.data() < bytes.data() || v.data.data() + v.data.size() > bytes.data() + bytes.size())
                __builtin_trap();
            if ((f.header().data_offset + t.offset) % f.header().alignment != 0) __builtin_trap();
            if (!ptq::io::has_float_conversion(v.type)) continue;
            sink = sink + ptq::io::to_float(v).size();
            if (v.ne.size() == 2) (void)ptq::io::to_matrix(v);
        }
    } catch (const ptq::error&) {
    }
    return 0;
}
