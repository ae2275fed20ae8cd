// expect: Block must be at least 1
#include <ptq/format/mx_int.hpp>
int main() { return ptq::MxInt<8, 0>::bits; }
