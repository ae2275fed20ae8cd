#pragma once
// Float32: the tag of "no quantization" where a format is expected (LQER's low-rank factors,
// activations in lqer_forward). It is not a QuantFormat.
#include <string>

namespace ptq {

/// Tag "keep in float32": the low-rank factors (or activations) are not quantized.
struct Float32 {
    static std::string name() { return "fp32"; }
};

}  // namespace ptq
