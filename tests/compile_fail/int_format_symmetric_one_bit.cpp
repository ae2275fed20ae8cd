// expect: a symmetric format needs at least 2 bits
// A symmetric 1-bit format has no +-1 pair.
#include <ptq/format/int_format.hpp>
int main() { return ptq::IntFormat<1, true>::bits; }
