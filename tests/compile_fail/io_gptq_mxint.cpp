// expect: GPTQ checkpoints hold integer formats only
#include <ptq/format/mx_int.hpp>
#include <ptq/io/gptq_layout.hpp>
int main() {
    ptq::QuantizedMatrix<ptq::MxInt<4, 32>> q;
    return static_cast<int>(ptq::io::export_gptq(q, "l").tensors.size());
}
