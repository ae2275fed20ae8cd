// RTN properties and edge cases for every granularity: scaled minifloat formats (see rtn_checks.hpp).
#include "rtn_checks.hpp"

// Formats under test. The sanitizer build (PTQ_TEST_QUICK, see tests/CMakeLists.txt) checks a
// representative subset: its purpose is memory and UB errors, not every bit width again.
#ifdef PTQ_TEST_QUICK
#define PTQ_MINIFLOAT_FORMATS ptq::Fp8E4M3, ptq::Fp4E2M1
#else
#define PTQ_MINIFLOAT_FORMATS ptq::Fp8E4M3, ptq::Fp8E5M2, ptq::Fp6E3M2, ptq::Fp6E2M3, ptq::Fp4E2M1
#endif

TEST_SUITE("granularity.properties") {

TEST_CASE_TEMPLATE("scaled minifloat: properties on random data, every granularity", F, PTQ_MINIFLOAT_FORMATS) {
    ptq_test::run_properties<F>();
}
TEST_CASE_TEMPLATE("scaled minifloat: values already on the grid are reconstructed exactly", F, PTQ_MINIFLOAT_FORMATS) {
    ptq_test::run_on_grid<F>();
}
TEST_CASE_TEMPLATE("scaled minifloat: edge cases", F, PTQ_MINIFLOAT_FORMATS) { ptq_test::run_edges<F>(); }

}  // TEST_SUITE("granularity.properties")
