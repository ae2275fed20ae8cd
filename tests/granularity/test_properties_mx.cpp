// RTN properties and edge cases for every granularity: MX formats (see rtn_checks.hpp).
#include "rtn_checks.hpp"

// Formats under test. The sanitizer build (PTQ_TEST_QUICK, see tests/CMakeLists.txt) checks a
// representative subset: its purpose is memory and UB errors, not every bit width again.
#ifdef PTQ_TEST_QUICK
#define PTQ_MX_FORMATS ptq::MxInt<6, 7>, ptq::MxFp4
#else
#define PTQ_MX_FORMATS                                                                                         \
    ptq::MxInt<8, 32>, ptq::MxInt<4, 32>, ptq::MxInt<2, 16>, ptq::MxInt<6, 7>, ptq::MxFp8E4M3, ptq::MxFp8E5M2, \
        ptq::MxFp6E3M2, ptq::MxFp6E2M3, ptq::MxFp4
#endif

TEST_SUITE("granularity.properties") {

TEST_CASE_TEMPLATE("MX: properties on random data, every granularity", F, PTQ_MX_FORMATS) {
    ptq_test::run_properties<F>();
}
TEST_CASE_TEMPLATE("MX: values already on the grid are reconstructed exactly", F, PTQ_MX_FORMATS) {
    ptq_test::run_on_grid<F>();
}
TEST_CASE_TEMPLATE("MX: edge cases", F, PTQ_MX_FORMATS) { ptq_test::run_edges<F>(); }

}  // TEST_SUITE("granularity.properties")
