// RTN properties and edge cases for every granularity: MX formats (see rtn_checks.hpp).
#include "rtn_checks.hpp"

TEST_SUITE("granularity.properties") {

TEST_CASE_TEMPLATE("MX: properties on random data, every granularity", F, ptq::MxInt<8, 32>, ptq::MxInt<4, 32>, ptq::MxInt<2, 16>, ptq::MxInt<6, 7>, ptq::MxFp8E4M3, ptq::MxFp8E5M2, ptq::MxFp6E3M2, ptq::MxFp6E2M3, ptq::MxFp4) {
    ptq_test::run_properties<F>();
}
TEST_CASE_TEMPLATE("MX: values already on the grid are reconstructed exactly", F, ptq::MxInt<8, 32>, ptq::MxInt<4, 32>, ptq::MxInt<2, 16>, ptq::MxInt<6, 7>, ptq::MxFp8E4M3, ptq::MxFp8E5M2, ptq::MxFp6E3M2, ptq::MxFp6E2M3, ptq::MxFp4) {
    ptq_test::run_on_grid<F>();
}
TEST_CASE_TEMPLATE("MX: edge cases", F, ptq::MxInt<8, 32>, ptq::MxInt<4, 32>, ptq::MxInt<2, 16>, ptq::MxInt<6, 7>, ptq::MxFp8E4M3, ptq::MxFp8E5M2, ptq::MxFp6E3M2, ptq::MxFp6E2M3, ptq::MxFp4) { ptq_test::run_edges<F>(); }

}  // TEST_SUITE
