// expect: an MX format carries its own block granularity
#include <ptq/algo/rtn.hpp>
int main() {
    ptq::Rtn<ptq::MxFp4, ptq::PerTensor> rtn;
    return static_cast<int>(sizeof(rtn));
}
