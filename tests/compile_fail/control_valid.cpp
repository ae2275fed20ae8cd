// expect: OK
// Control for the compile-fail tests: the same command line on valid instantiations must
// compile, so that a failure above can only come from the expected static_assert.
#include <ptq/algo/rtn.hpp>
int main() {
    ptq::Rtn<ptq::MxInt<8, 32>, ptq::PerGroup<32>> a;
    ptq::Rtn<ptq::IntFormat<8, false>, ptq::PerTensor> b;
    using F8 = ptq::Fp8<4, 3>;
    using M1 = ptq::MxInt<2, 1>;
    return static_cast<int>(sizeof(a) + sizeof(b)) + F8::bits + M1::bits + ptq::IntFormat<1, false>::bits;
}
