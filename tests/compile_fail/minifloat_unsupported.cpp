// expect: Minifloat<E, M>: supported element types are E4M3, E5M2
#include <ptq/format/minifloat.hpp>
int main() { return ptq::Minifloat<3, 4>::bits; }
