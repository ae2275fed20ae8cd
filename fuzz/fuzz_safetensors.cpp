// libFuzzer target: the safetensors reader on arbitrary bytes. Every input must either load
// (then every tensor view is read and converted) or throw a ptq::error; anything else (a
// crash, a sanitizer report, another exception, an allocation above -malloc_limit_mb) is a finding.
#include <cstddef>
#include <cstdint>
#include <span>

#include <ptq/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        const ptq::io::SafetensorsFile f(bytes, "fuzz.safetensors");
        volatile float sink = 0;
        for (const auto& t : f.tensors()) {
            const auto v = f.tensor(t.name);
            // The view lies inside the input and has the validated size.
            if (v.data.data() < bytes.data() || v.data.data() + v.data.size() > bytes.data() + bytes.size())
                __builtin_trap();
            if (v.data.size() * 8 != v.numel() * ptq::io::bits_per_element(v.dtype)) __builtin_trap();
            if (!ptq::io::has_float_conversion(v.dtype)) continue;
            const auto x = ptq::io::to_float(v);
            for (float e : x) sink = sink + e;
            if (v.shape.size() == 2) (void)ptq::io::to_matrix(v);
        }
        for (const auto& [k, val] : f.metadata()) sink = sink + float(k.size() + val.size());
    } catch (const ptq::error&) {
    }
    return 0;
}
