// Granularity policies (granularity/granularity.hpp): layouts by hand from docs/DESIGN.md §7 (groups
// run along in_features = columns; the last group of a row may be shorter), compile-time
// rejection of misuse, runtime checks.
#include <doctest/doctest.h>

#include <type_traits>

#include "../format/support.hpp"

using namespace ptq;

// ---- compile-time checks that can be expressed as constraints ------------------------------
// (static_asserts inside class templates -- IntFormat<0, false>, MxInt<9, 32>, Fp8<3, 3>,
// an MX format with a foreign granularity -- cannot be probed with `requires`; they are checked
// by the compile-fail ctest in tests/compile_fail/.)
static_assert(!std::is_default_constructible_v<PerGroup<dynamic_group>>, "a runtime group size must be given");
static_assert(!std::is_constructible_v<PerGroup<32>, std::size_t>, "a static group size takes no runtime size");
static_assert(std::is_constructible_v<PerGroup<dynamic_group>, std::size_t>);
static_assert(Granularity<PerTensor> && Granularity<PerChannel> && Granularity<PerToken> && Granularity<PerGroup<8>> &&
              Granularity<PerGroup<dynamic_group>>);
static_assert(!Granularity<int> && !Granularity<GroupLayout>);
static_assert(QuantFormat<IntFormat<4, false>> && QuantFormat<MxInt<8, 32>> && QuantFormat<Fp8E4M3> &&
              QuantFormat<MxFp4>);
static_assert(!QuantFormat<int> && !QuantFormat<PerTensor>);
static_assert(MxFormat<MxInt<4, 16>> && !MxFormat<IntFormat<4, true>> && !MxFormat<Fp4>);
static_assert(std::is_same_v<default_granularity_t<MxInt<8, 16>>, PerGroup<16>>);
static_assert(std::is_same_v<default_granularity_t<IntFormat<4, false>>, PerChannel>);
static_assert(PerGroup<32>{}.group_size() == 32);
static_assert(PerGroup<32>{}.num_groups(172) == 6);
static_assert(PerGroup<32>{}.group_of(171) == 5);
static_assert(PerGroup<32>{}.num_groups(0) == 0);

TEST_SUITE("granularity") {

TEST_CASE("per-tensor: one group") {
    const GroupLayout l = PerTensor{}.layout(5, 7);
    CHECK(l.num_groups() == 1);
    CHECK(l.group_index(4, 6) == 0);
    CHECK(l.group_begin(0) == 0);
    CHECK(l.group_end(0) == 7);
    CHECK(PerTensor{}.layout(0, 7).num_groups() == 0);
    CHECK(PerTensor{}.layout(5, 0).num_groups() == 0);
}

TEST_CASE("per-channel / per-token: one group per row") {
    for (const GroupLayout& l : {PerChannel{}.layout(5, 7), PerToken{}.layout(5, 7)}) {
        CHECK(l.num_groups() == 5);
        CHECK(l.col_groups() == 1);
        CHECK(l.group_index(3, 0) == 3);
        CHECK(l.group_index(3, 6) == 3);
        CHECK(l.group_end(0) == 7);
    }
    CHECK(PerChannel{}.layout(5, 0).num_groups() == 0);
    CHECK(PerChannel{}.layout(0, 5).num_groups() == 0);
}

TEST_CASE("per-group: ragged last group (172 columns, group 32)") {
    const GroupLayout l = PerGroup<32>{}.layout(3, 172);
    CHECK(l.col_groups() == 6);
    CHECK(l.num_groups() == 18);
    CHECK(l.group_begin(5) == 160);
    CHECK(l.group_end(5) == 172);
    CHECK(l.group_end(4) == 160);
    CHECK(l.group_index(0, 31) == 0);
    CHECK(l.group_index(0, 32) == 1);
    CHECK(l.group_index(2, 171) == 17);
    CHECK(l.group_index(1, 0) == 6);
    SUBCASE("runtime size 10 on 103 columns") {
        const GroupLayout d = PerGroup<dynamic_group>{10}.layout(2, 103);
        CHECK(d.col_groups() == 11);
        CHECK(d.group_end(10) == 103);
        CHECK(d.group_index(1, 102) == 21);
    }
    SUBCASE("group larger than the row") {
        const GroupLayout d = PerGroup<128>{}.layout(2, 64);
        CHECK(d.col_groups() == 1);
        CHECK(d.group_end(0) == 64);
    }
    SUBCASE("group of 1") {
        const GroupLayout d = PerGroup<1>{}.layout(2, 3);
        CHECK(d.num_groups() == 6);
        CHECK(d.group_index(1, 2) == 5);
    }
}

TEST_CASE("runtime checks") {
    CHECK_THROWS_AS(PerGroup<dynamic_group>{0}, ptq::invalid_argument);
    CHECK_THROWS_WITH(PerGroup<dynamic_group>{0}, doctest::Contains("'group_size'"));
    CHECK(PerGroup<dynamic_group>{7}.group_size() == 7);
    CHECK(PerGroup<dynamic_group>{7}.num_groups(15) == 3);
    CHECK_THROWS_AS((resolve_layout<MxInt<8, 32>>(PerGroup<dynamic_group>{16}, 2, 64)), ptq::invalid_argument);
    CHECK_THROWS_WITH((resolve_layout<MxInt<8, 32>>(PerGroup<dynamic_group>{16}, 2, 64)),
                      doctest::Contains("'granularity'"));
    CHECK((resolve_layout<MxInt<8, 32>>(PerGroup<dynamic_group>{32}, 2, 64)).col_groups() == 2);
    CHECK((resolve_layout<MxInt<8, 32>>(PerGroup<32>{}, 2, 70)).col_groups() == 3);
    CHECK((resolve_layout<IntFormat<4, false>>(PerGroup<dynamic_group>{16}, 2, 64)).col_groups() == 4);
}

}  // TEST_SUITE("granularity")
