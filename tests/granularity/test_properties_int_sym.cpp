// RTN properties and edge cases for every granularity: symmetric INT formats (see rtn_checks.hpp).
#include "rtn_checks.hpp"

// Formats under test. The sanitizer build (PTQ_TEST_QUICK, see tests/CMakeLists.txt) checks a
// representative subset: its purpose is memory and UB errors, not every bit width again.
#ifdef PTQ_TEST_QUICK
#define PTQ_INT_SYM_FORMATS ptq::IntFormat<4, true>, ptq::IntFormat<3, true, ptq::IntRange::full>
#else
#define PTQ_INT_SYM_FORMATS                                                    \
    ptq::IntFormat<2, true>, ptq::IntFormat<4, true>, ptq::IntFormat<8, true>, \
        ptq::IntFormat<3, true, ptq::IntRange::full>, ptq::IntFormat<4, true, ptq::IntRange::full>
#endif

TEST_SUITE("granularity.properties") {

TEST_CASE_TEMPLATE("symmetric INT: properties on random data, every granularity", F, PTQ_INT_SYM_FORMATS) {
    ptq_test::run_properties<F>();
}
TEST_CASE_TEMPLATE("symmetric INT: values already on the grid are reconstructed exactly", F, PTQ_INT_SYM_FORMATS) {
    ptq_test::run_on_grid<F>();
}
TEST_CASE_TEMPLATE("symmetric INT: edge cases", F, PTQ_INT_SYM_FORMATS) { ptq_test::run_edges<F>(); }

}  // TEST_SUITE("granularity.properties")
