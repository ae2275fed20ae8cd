// expect: IntFormat<Bits, Symmetric>: Bits must be in \[1, 8\]
// Codes are stored in at most 8 bits.
#include <ptq/format/int_format.hpp>
int main() { return ptq::IntFormat<9, true>::bits; }
