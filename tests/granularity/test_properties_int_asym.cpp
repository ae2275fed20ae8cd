// RTN properties and edge cases for every granularity: asymmetric INT formats (see rtn_checks.hpp).
#include "rtn_checks.hpp"

TEST_SUITE("granularity.properties") {

TEST_CASE_TEMPLATE("asymmetric INT: properties on random data, every granularity", F, ptq::IntFormat<1, false>, ptq::IntFormat<2, false>, ptq::IntFormat<3, false>, ptq::IntFormat<4, false>, ptq::IntFormat<8, false>) {
    ptq_test::run_properties<F>();
}
TEST_CASE_TEMPLATE("asymmetric INT: values already on the grid are reconstructed exactly", F, ptq::IntFormat<1, false>, ptq::IntFormat<2, false>, ptq::IntFormat<3, false>, ptq::IntFormat<4, false>, ptq::IntFormat<8, false>) {
    ptq_test::run_on_grid<F>();
}
TEST_CASE_TEMPLATE("asymmetric INT: edge cases", F, ptq::IntFormat<1, false>, ptq::IntFormat<2, false>, ptq::IntFormat<3, false>, ptq::IntFormat<4, false>, ptq::IntFormat<8, false>) { ptq_test::run_edges<F>(); }

}  // TEST_SUITE
