// expect: MxInt<Bits, Block>: Bits must be in \[2, 8\]
// MXINT elements have a sign and d-2 fraction bits, at most 8 bits in total.
#include <ptq/format/mx_int.hpp>
int main() { return ptq::MxInt<9, 32>::bits; }
