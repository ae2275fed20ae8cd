// expect: integer kernels exist for IntFormat
#include <ptq/gemv.hpp>
// 3-bit weights have no integer kernel with int8 activations.
int main() {
    ptq::QuantizedMatrix<ptq::IntFormat<3, false>> w;
    ptq::QuantizedMatrix<ptq::IntFormat<8, true>> x;
    return static_cast<int>(ptq::gemm(w, x).size());
}
