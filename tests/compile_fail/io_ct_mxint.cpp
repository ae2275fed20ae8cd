// expect: no consumer has an MXINT format
#include <ptq/format/mx_int.hpp>
#include <ptq/io/compressed_tensors_layout.hpp>
int main() {
    ptq::QuantizedMatrix<ptq::MxInt<8, 32>> q;
    return static_cast<int>(ptq::io::export_compressed_tensors(q, "l").tensors.size());
}
