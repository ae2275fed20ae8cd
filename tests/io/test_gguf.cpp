// GGUF v3 reader / writer: bytes built from the specification, every metadata value type
// (scalars and arrays) round-tripped, alignments other than 32, each validation rule of ggml's
// gguf_init_from_file_impl with a file that breaks it, and the F32/F16/BF16 conversions.
#include <cmath>

#include <doctest/doctest.h>

#include <ptq/format/half.hpp>
#include <ptq/io/gguf.hpp>

#include "io_test_support.hpp"

using namespace ptq::io;
using namespace ptq_io_test;

namespace {

GgufHeader parse(const std::vector<std::byte>& f) { return parse_gguf_header(f, "hand.gguf"); }

/// Header of a hand-built file: magic, version, counts.
Bytes gguf_start(std::int64_t n_tensors, std::int64_t n_kv, std::uint32_t version = 3) {
    Bytes b;
    b.raw("GGUF").put(version).put(n_tensors).put(n_kv);
    return b;
}
/// Tensor info: name, n_dims, ne..., type, offset.
void tensor_info(Bytes& b, const std::string& name, std::vector<std::int64_t> ne, std::int32_t type,
                 std::uint64_t off) {
    b.str(name).put(std::uint32_t(ne.size()));
    for (auto d : ne) b.put(d);
    b.put(type).put(off);
}

void expect_reject(const Bytes& b, const std::string& fragment) {
    const auto e = expect_file_error([&] { parse(b.b); }, fragment);
    CHECK(e.file() == "hand.gguf");
}

}  // namespace

TEST_CASE("gguf: the writer's bytes equal a file built from the specification") {
    const std::vector<float> x = {1, 2, 3, 4};
    const auto xb = floats_bytes(x);
    std::vector<std::byte> q(18);  // one Q4_0 block
    q[0] = std::byte{0x3C};
    const GgufMetadata kv = {{"general.architecture", GgufValue("llama")},
                             {"llama.block_count", GgufValue(std::uint32_t{5})}};
    const std::vector<GgufTensorData> ts = {{"a", GgmlType::F32, {4}, xb}, {"b.weight", GgmlType::Q4_0, {32, 1}, q}};
    const auto out = serialize_gguf(kv, ts);

    Bytes e = gguf_start(2, 2);
    e.str("general.architecture").put(std::int32_t(8)).str("llama");
    e.str("llama.block_count").put(std::int32_t(4)).put(std::uint32_t(5));
    tensor_info(e, "a", {4}, 0, 0);
    tensor_info(e, "b.weight", {32, 1}, 2, 32);  // 16 bytes of "a" padded to 32
    e.pad_to(32);
    e.b.insert(e.b.end(), xb.begin(), xb.end());
    e.pad_to(32);
    e.b.insert(e.b.end(), q.begin(), q.end());
    e.pad_to(32);
    CHECK(out == e.b);

    const GgufFile f(e.b, "mem");
    CHECK(f.header().version == 3);
    CHECK(f.header().alignment == 32);
    CHECK(f.header().data_offset % 32 == 0);
    CHECK(f.find("general.architecture")->get<std::string>() == "llama");
    CHECK(f.find("llama.block_count")->get<std::uint32_t>() == 5);
    CHECK(to_float(f.tensor("a")) == x);
    const auto b = f.tensor("b.weight");
    CHECK(b.type == GgmlType::Q4_0);
    CHECK(b.data.size() == 18);
    CHECK(std::equal(b.data.begin(), b.data.end(), q.begin()));
    expect_file_error([&] { (void)to_float(b); }, "q4_0 has no direct conversion");
    expect_file_error([&] { (void)f.tensor("c"); }, "tensor 'c'");
}

TEST_CASE("gguf: every metadata value type, scalar and array, round-trips through a file") {
    ScratchDir dir("gguf_kv");
    const GgufMetadata kv = {
        {"u8", GgufValue(std::uint8_t{250})},
        {"i8", GgufValue(std::int8_t{-7})},
        {"u16", GgufValue(std::uint16_t{65000})},
        {"i16", GgufValue(std::int16_t{-30000})},
        {"u32", GgufValue(std::uint32_t{4000000000u})},
        {"i32", GgufValue(std::int32_t{-2000000000})},
        {"f32", GgufValue(1.5f)},
        {"bool", GgufValue(true)},
        {"str", GgufValue(std::string("h\xC3\xA9llo\0x", 8))},
        {"u64", GgufValue(std::uint64_t{1} << 60)},
        {"i64", GgufValue(std::int64_t{-(std::int64_t{1} << 60)})},
        {"f64", GgufValue(-0.1)},
        {"a.u8", GgufValue(std::vector<std::uint8_t>{0, 255})},
        {"a.i8", GgufValue(std::vector<std::int8_t>{-128, 127})},
        {"a.u16", GgufValue(std::vector<std::uint16_t>{1, 2, 3})},
        {"a.i16", GgufValue(std::vector<std::int16_t>{-1})},
        {"a.u32", GgufValue(std::vector<std::uint32_t>{})},
        {"a.i32", GgufValue(std::vector<std::int32_t>{1, 2, 3, 6})},
        {"a.f32", GgufValue(std::vector<float>{-0.0f, 3.25f})},
        {"a.bool", GgufValue(std::vector<bool>{true, false, true})},
        {"a.str", GgufValue(std::vector<std::string>{"", "a", "<0x0A>"})},
        {"a.u64", GgufValue(std::vector<std::uint64_t>{~std::uint64_t{0}})},
        {"a.i64", GgufValue(std::vector<std::int64_t>{-1, 0})},
        {"a.f64", GgufValue(std::vector<double>{1e300})},
        {"general.alignment", GgufValue(std::uint32_t{8})},
    };
    write_gguf(dir / "kv.gguf", kv, {});
    const GgufFile f(dir / "kv.gguf");
    REQUIRE(f.kv().size() == kv.size());
    for (std::size_t i = 0; i < kv.size(); ++i) {
        CAPTURE(kv[i].first);
        CHECK(f.kv()[i].first == kv[i].first);
        CHECK(f.kv()[i].second == kv[i].second);
    }
    CHECK(f.find("a.str")->type() == GgufValueType::ARRAY);
    CHECK(f.find("a.str")->element_type() == GgufValueType::STRING);
    CHECK(f.find("a.str")->array_size() == 3);
    CHECK(f.find("a.bool")->element_type() == GgufValueType::BOOL);
    CHECK(f.find("f64")->type() == GgufValueType::FLOAT64);
    CHECK(f.find("str")->get<std::string>().size() == 8);
    CHECK(f.header().alignment == 8);
    static_assert(!std::is_constructible_v<GgufValue, long long>, "no implicit integer conversion");
    static_assert(!std::is_constructible_v<GgufValue, char>);
    static_assert(!std::is_constructible_v<GgufValue, std::vector<long long>>);
    CHECK(GgufValue(5).type() == GgufValueType::INT32);
    static_assert(std::is_constructible_v<GgufValue, std::int32_t>);
    CHECK_THROWS_AS((void)f.find("u8")->get<std::uint32_t>(), ptq::invalid_argument);
    // A bool byte other than 0/1 reads as true (ggml: value != 0).
    Bytes b = gguf_start(0, 1);
    b.str("b").put(std::int32_t(7)).put(std::uint8_t(2));
    CHECK(parse(b.b).find("b")->get<bool>() == true);
}

TEST_CASE("gguf: alignments other than 32 and tensors of several types") {
    for (std::uint32_t a : {1u, 8u, 64u, 256u}) {
        CAPTURE(a);
        const auto f32 = random_bytes(4 * 5 * 3, a);
        const auto q4k = random_bytes(144 * 2, a + 1);
        const auto mx = random_bytes(17 * 2, a + 2);
        const auto bf = random_bytes(2 * 7, a + 3);
        const GgufMetadata kv = {{"general.alignment", GgufValue(a)}};
        const std::vector<GgufTensorData> ts = {{"f", GgmlType::F32, {5, 3}, f32},
                                                {"k", GgmlType::Q4_K, {256, 2}, q4k},
                                                {"m", GgmlType::MXFP4, {32, 1, 2}, mx},
                                                {"b", GgmlType::BF16, {7}, bf}};
        const auto file = serialize_gguf(kv, ts);
        const GgufFile g(file, "mem");
        CHECK(g.header().alignment == a);
        CHECK(g.header().data_offset % a == 0);
        for (const auto& t : ts) {
            const auto v = g.tensor(t.name);
            CHECK((g.header().data_offset + g.header().find_tensor(t.name)->offset) % a == 0);
            CHECK(std::vector<std::uint64_t>(v.ne.begin(), v.ne.end()) == t.ne);
            CHECK(std::equal(v.data.begin(), v.data.end(), t.data.begin(), t.data.end()));
        }
        CHECK(file.size() == g.header().data_offset + g.header().data_size);
    }
}

TEST_CASE("gguf: F32 / F16 / BF16 to float; ne order in to_matrix") {
    std::vector<std::byte> halfs(65536 * 2);
    for (std::uint32_t i = 0; i < 65536; ++i) {
        const auto h = static_cast<std::uint16_t>(i);
        std::memcpy(halfs.data() + 2 * i, &h, 2);
    }
    const std::vector<float> m = {1, 2, 3, 4, 5, 6};
    const auto mb = floats_bytes(m);
    const std::vector<GgufTensorData> ts = {{"h", GgmlType::F16, {65536}, halfs},
                                            {"b", GgmlType::BF16, {256, 256}, halfs},
                                            {"m", GgmlType::F32, {3, 2}, mb}};
    const auto file = serialize_gguf({}, ts);
    const GgufFile g(file, "mem");
    const auto h = to_float(g.tensor("h"));
    const auto b = to_float(g.tensor("b"));
    std::size_t bad = 0;
    for (std::uint32_t i = 0; i < 65536; ++i) {
        const float rh = ptq::half_bits_to_float(std::uint16_t(i)), rb = ptq::bf16_bits_to_float(std::uint16_t(i));
        if (!(std::isnan(rh) ? std::isnan(h[i]) : rh == h[i] && std::signbit(rh) == std::signbit(h[i]))) ++bad;
        if (!(std::isnan(rb) ? std::isnan(b[i]) : rb == b[i] && std::signbit(rb) == std::signbit(b[i]))) ++bad;
    }
    CHECK(bad == 0);
    CHECK(as_span<float>(g.tensor("m"))[4] == 5.0f);
    CHECK(as_span<std::uint16_t>(g.tensor("h"))[300] == 300);
    expect_file_error([&] { (void)as_span<float>(g.tensor("h")); }, "16-bit elements");
    const auto mm = to_matrix(g.tensor("m"));  // ne = [3, 2]: 2 rows of 3
    CHECK(mm.rows() == 2);
    CHECK(mm.cols() == 3);
    CHECK(mm(1, 0) == 4.0f);
    expect_file_error([&] { (void)to_matrix(g.tensor("h")); }, "a matrix needs 2");
}

TEST_CASE("gguf: each validation rule rejects a file that breaks it") {
    SUBCASE("magic and version") {
        Bytes b;
        b.raw("GGUX").put(std::uint32_t(3)).put(std::int64_t(0)).put(std::int64_t(0));
        expect_reject(b, "magic");
        expect_reject(Bytes().raw("GG"), "magic");
        expect_reject(gguf_start(0, 0, 1), "v1 is not supported");
        expect_reject(gguf_start(0, 0, 4), "newer than 3");
        expect_reject(gguf_start(0, 0, 0), "version");
        expect_reject(gguf_start(0, 0, 0x03000000), "endianness");
        CHECK(parse(gguf_start(0, 0, 2).b).version == 2);
    }
    SUBCASE("counts") {
        expect_reject(gguf_start(-1, 0), "tensor count");
        expect_reject(gguf_start(0, -1), "key/value count");
        expect_reject(gguf_start(0, 1), "unexpected end of file");
        expect_reject(gguf_start(1'000'000'000'000, 0), "unexpected end of file");
    }
    SUBCASE("keys and values") {
        Bytes b = gguf_start(0, 1);
        b.str("").put(std::int32_t(0)).put(std::uint8_t(1));
        expect_reject(b, "empty key");
        b = gguf_start(0, 2);
        b.str("k").put(std::int32_t(0)).put(std::uint8_t(1)).str("k").put(std::int32_t(0)).put(std::uint8_t(1));
        expect_reject(b, "duplicate key");
        b = gguf_start(0, 1);
        b.str("k").put(std::int32_t(13)).put(std::uint8_t(1));
        expect_reject(b, "invalid GGUF value type 13");
        b = gguf_start(0, 1);
        b.str("k").put(std::int32_t(9)).put(std::int32_t(9)).put(std::uint64_t(0));
        expect_reject(b, "in an array");
        b = gguf_start(0, 1);
        b.str("k").put(std::int32_t(8)).put(std::uint64_t(100)).raw("short");
        expect_reject(b, "exceeds the rest of the file");
        b = gguf_start(0, 1);
        b.str("k").put(std::int32_t(8)).put(std::uint64_t(2) << 30);
        expect_reject(b, "exceeds 1 GiB");
        b = gguf_start(0, 1);
        b.put(std::uint64_t(~0ull));
        expect_reject(b, "key #0");
        b = gguf_start(0, 1);
        b.str("k").put(std::int32_t(9)).put(std::int32_t(4)).put(std::uint64_t(1) << 31);
        expect_reject(b, "exceeds 2^30");
        b = gguf_start(0, 1);
        b.str("k").put(std::int32_t(9)).put(std::int32_t(10)).put(std::uint64_t(1000)).zeros(16);
        expect_reject(b, "exceeds the rest of the file");
        b = gguf_start(0, 1);
        b.str("k").put(std::int32_t(9)).put(std::int32_t(8)).put(std::uint64_t(1000)).zeros(16);  // strings: >= 8 bytes
                                                                                                  // each
        expect_reject(b, "exceeds the rest of the file");
    }
    SUBCASE("general.alignment") {
        Bytes b = gguf_start(0, 1);
        b.str("general.alignment").put(std::int32_t(10)).put(std::uint64_t(32));
        expect_reject(b, "must be of type u32");
        b = gguf_start(0, 1);
        b.str("general.alignment").put(std::int32_t(4)).put(std::uint32_t(48));
        expect_reject(b, "not a power of 2");
        b = gguf_start(0, 1);
        b.str("general.alignment").put(std::int32_t(4)).put(std::uint32_t(0));
        expect_reject(b, "not a power of 2");
    }
    SUBCASE("tensor infos") {
        auto one = [](const std::string& name, std::vector<std::int64_t> ne, std::int32_t type, std::uint64_t off) {
            Bytes b = gguf_start(1, 0);
            tensor_info(b, name, ne, type, off);
            b.pad_to(32).zeros(4096);
            return b;
        };
        CHECK(parse(one(std::string(63, 'n'), {4}, 0, 0).b).tensors.size() == 1);
        expect_reject(one(std::string(64, 'n'), {4}, 0, 0), ">= 64");
        expect_reject(one(std::string("a\0b", 3), {4}, 0, 0), "NUL");
        expect_reject(one("t", {1, 1, 1, 1, 1}, 0, 0), "n_dims");
        expect_reject(one("t", {4, -1}, 0, 0), "negative");
        expect_reject(one("t", {std::int64_t(1) << 32, std::int64_t(1) << 31}, 0, 0), "overflows int64");
        expect_reject(one("t", {4}, 4, 0), "invalid ggml type 4");
        expect_reject(one("t", {4}, 43, 0), "invalid ggml type 43");
        expect_reject(one("t", {4}, -1, 0), "invalid ggml type -1");
        expect_reject(one("t", {172, 2}, 2, 0), "not a multiple of the block size 32 of q4_0");
        expect_reject(one("t", {4}, 0, 32), "offset");
        expect_reject(one("t", {std::int64_t(1) << 40}, 0, 0), "truncated file");
        // zero-element tensors are legal, as in ggml
        CHECK(parse(one("z", {0, 5}, 0, 0).b).tensors[0].nbytes() == 0);
        // ... whatever the other dimensions (found by fuzzing: the product must not be formed)
        const auto big = parse(one("z", {std::int64_t(1) << 34, std::int64_t(1) << 33, 0}, 0, 0).b);
        CHECK(big.tensors[0].numel() == 0);
        CHECK(big.tensors[0].nbytes() == 0);
        Bytes b = gguf_start(2, 0);
        tensor_info(b, "t", {4}, 0, 0);
        tensor_info(b, "t", {4}, 0, 32);
        b.pad_to(32).zeros(64);
        expect_reject(b, "duplicate tensor name");
        b = gguf_start(2, 0);
        tensor_info(b, "t", {4}, 0, 0);
        tensor_info(b, "u", {4}, 0, 16);  // misaligned: must be 32 (16 bytes padded)
        b.pad_to(32).zeros(64);
        expect_reject(b, "tensor 'u' offset");
        b = gguf_start(2, 0);
        tensor_info(b, "t", {8}, 0, 0);
        tensor_info(b, "u", {4}, 0, 0);  // overlapping
        b.pad_to(32).zeros(64);
        expect_reject(b, "expected 32");
    }
    SUBCASE("every strict prefix of a valid file is rejected") {
        const auto x = random_bytes(4 * 9, 7);
        const GgufMetadata kv = {{"general.name", GgufValue("t")},
                                 {"a", GgufValue(std::vector<std::string>{"x", "yz"})}};
        const std::vector<GgufTensorData> ts = {{"w", GgmlType::F32, {9}, x},
                                                {"v", GgmlType::F16, {2}, std::span(x).first(4)}};
        const auto file = serialize_gguf(kv, ts);
        CHECK(parse(file).tensors.size() == 2);
        std::size_t rejected = 0;
        for (std::size_t n = 0; n < file.size(); ++n) {
            try {
                (void)parse_gguf_header(std::span(file).first(n), "prefix");
            } catch (const ptq::file_error&) {
                ++rejected;
            }
        }
        CHECK(rejected == file.size());
    }
}

TEST_CASE("gguf: the writer refuses bad input and leaves no file behind") {
    ScratchDir dir("gguf_writer_errors");
    const auto p = dir / "x.gguf";
    std::vector<std::byte> q(18 * 6);
    expect_file_error(
        [&] {
            write_gguf(p, {}, std::vector<GgufTensorData>{{"w", GgmlType::Q4_0, {172, 1}, q}});
        },
        "not a multiple of the block size");
    expect_file_error(
        [&] {
            write_gguf(p, {}, std::vector<GgufTensorData>{{"w", GgmlType::Q4_0, {64, 2}, q}});
        },
        "the shape needs 72");
    expect_file_error(
        [&] {
            write_gguf(p, {},
                       std::vector<GgufTensorData>{{std::string(64, 'x'), GgmlType::I8, {4}, std::span(q).first(4)}});
        },
        "64 bytes or more");
    expect_file_error(
        [&] {
            write_gguf(p, {}, std::vector<GgufTensorData>{{"w", GgmlType::I8, {}, {}}});
        },
        "1 to 4 dimensions");
    expect_file_error(
        [&] {
            write_gguf(p, {}, std::vector<GgufTensorData>{{"w", static_cast<GgmlType>(5), {4}, {}}});
        },
        "invalid ggml type");
    expect_file_error(
        [&] {
            write_gguf(p, GgufMetadata{{"general.alignment", GgufValue(std::uint64_t{32})}}, {});
        },
        "u32 power of 2");
    expect_file_error(
        [&] {
            write_gguf(p, GgufMetadata{{"k", GgufValue(1.0f)}, {"k", GgufValue(2.0f)}}, {});
        },
        "given twice");
    expect_file_error([&] { write_gguf(p, GgufMetadata{{"", GgufValue(1.0f)}}, {}); }, "empty key");
    CHECK(dir.file_count() == 0);
}

TEST_CASE("gguf: type tables") {
    CHECK(ggml_type_size(GgmlType::Q4_0) == 18);
    CHECK(ggml_type_size(GgmlType::Q4_1) == 20);
    CHECK(ggml_type_size(GgmlType::Q8_0) == 34);
    CHECK(ggml_type_size(GgmlType::Q4_K) == 144);
    CHECK(ggml_block_size(GgmlType::Q4_K) == 256);
    CHECK(ggml_type_size(GgmlType::MXFP4) == 17);
    CHECK(ggml_type_size(GgmlType::BF16) == 2);
    CHECK(ggml_row_size(GgmlType::Q8_0, 64) == 68);
    CHECK(!is_valid_ggml_type(4));
    CHECK(!is_valid_ggml_type(31));
    CHECK(!is_valid_ggml_type(43));
    CHECK(ggml_type_name(GgmlType::Q4_K) == "q4_K");
}
