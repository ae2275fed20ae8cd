// RTN properties and edge cases for every granularity: scaled minifloat formats (see rtn_checks.hpp).
#include "rtn_checks.hpp"

TEST_SUITE("granularity.properties") {

TEST_CASE_TEMPLATE("scaled minifloat: properties on random data, every granularity", F, ptq::Fp8E4M3, ptq::Fp8E5M2, ptq::Fp6E3M2, ptq::Fp6E2M3, ptq::Fp4E2M1) {
    ptq_test::run_properties<F>();
}
TEST_CASE_TEMPLATE("scaled minifloat: values already on the grid are reconstructed exactly", F, ptq::Fp8E4M3, ptq::Fp8E5M2, ptq::Fp6E3M2, ptq::Fp6E2M3, ptq::Fp4E2M1) {
    ptq_test::run_on_grid<F>();
}
TEST_CASE_TEMPLATE("scaled minifloat: edge cases", F, ptq::Fp8E4M3, ptq::Fp8E5M2, ptq::Fp6E3M2, ptq::Fp6E2M3, ptq::Fp4E2M1) { ptq_test::run_edges<F>(); }

}  // TEST_SUITE
