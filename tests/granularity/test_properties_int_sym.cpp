// RTN properties and edge cases for every granularity: symmetric INT formats (see rtn_checks.hpp).
#include "rtn_checks.hpp"

TEST_SUITE("granularity.properties") {

TEST_CASE_TEMPLATE("symmetric INT: properties on random data, every granularity", F, ptq::IntFormat<2, true>, ptq::IntFormat<4, true>, ptq::IntFormat<8, true>, ptq::IntFormat<3, true, ptq::IntRange::full>, ptq::IntFormat<4, true, ptq::IntRange::full>) {
    ptq_test::run_properties<F>();
}
TEST_CASE_TEMPLATE("symmetric INT: values already on the grid are reconstructed exactly", F, ptq::IntFormat<2, true>, ptq::IntFormat<4, true>, ptq::IntFormat<8, true>, ptq::IntFormat<3, true, ptq::IntRange::full>, ptq::IntFormat<4, true, ptq::IntRange::full>) {
    ptq_test::run_on_grid<F>();
}
TEST_CASE_TEMPLATE("symmetric INT: edge cases", F, ptq::IntFormat<2, true>, ptq::IntFormat<4, true>, ptq::IntFormat<8, true>, ptq::IntFormat<3, true, ptq::IntRange::full>, ptq::IntFormat<4, true, ptq::IntRange::full>) { ptq_test::run_edges<F>(); }

}  // TEST_SUITE
