// expect: an MX format carries its own block granularity
// The shared E8M0 scale spans exactly the format's block: PerGroup<16> on a block-32 format is
// rejected at compile time (a runtime PerGroup of the wrong size throws instead).
#include <ptq/algo/rtn.hpp>
int main() {
    ptq::Rtn<ptq::MxInt<8, 32>, ptq::PerGroup<16>> rtn;
    return static_cast<int>(sizeof(rtn));
}
