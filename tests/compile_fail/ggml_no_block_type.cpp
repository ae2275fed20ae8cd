// expect: this format has no ggml block type
#include <ptq/io/gguf_blocks.hpp>
int main() {
    ptq::QuantizedMatrix<ptq::IntFormat<3, true>> q;
    return static_cast<int>(ptq::io::to_ggml(q, "w").data.size());
}
