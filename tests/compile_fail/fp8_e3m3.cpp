// expect: Fp8<E, M>: FP8 is E4M3 \(OCP E4M3FN\) or E5M2
// E3M3 is 7 bits, not an FP8 format.
#include <ptq/format/minifloat.hpp>
int main() { return ptq::Fp8<3, 3>::bits; }
