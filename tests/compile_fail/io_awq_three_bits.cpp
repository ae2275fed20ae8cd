// expect: AWQ GEMM checkpoints are 4-bit only
#include <ptq/io/awq_layout.hpp>
int main() {
    ptq::QuantizedMatrix<ptq::IntFormat<3, false>> q;
    return static_cast<int>(ptq::io::export_awq(q, "l").tensors.size());
}
