// expect: IntFormat<Bits, Symmetric>: Bits must be in \[1, 8\]
// A 0-bit integer format is meaningless: IntFormat's static_assert must reject it.
#include <ptq/format/int_format.hpp>
int main() { return ptq::IntFormat<0, false>::bits; }
