// safetensors reader / writer: the header byte layout from the specification, round trips of
// every dtype, each validation rule of the reference reader with a file that breaks it, the
// all-or-nothing writer and sharded checkpoints.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <ptq/format/half.hpp>
#include <ptq/io/safetensors.hpp>
#include <ptq/io/safetensors_index.hpp>

#include "io_test_support.hpp"

using namespace ptq::io;
using namespace ptq_io_test;

namespace {

/// A safetensors file built by hand: u64 N, the JSON (padded with spaces to a multiple of 8
/// unless `pad` is false), the data.
std::vector<std::byte> st_bytes(std::string json, const std::vector<std::byte>& data, bool pad = true) {
    if (pad) json.resize((json.size() + 7) / 8 * 8, ' ');
    Bytes b;
    b.put(std::uint64_t(json.size())).raw(json);
    b.b.insert(b.b.end(), data.begin(), data.end());
    return b.b;
}

SafetensorsHeader parse_st(const std::vector<std::byte>& f) { return parse_safetensors_header(f, "hand.safetensors"); }

void expect_reject(const std::string& json, std::size_t data_bytes, const std::string& fragment) {
    const auto f = st_bytes(json, std::vector<std::byte>(data_bytes));
    const auto e = expect_file_error([&] { parse_st(f); }, fragment);
    CHECK(e.file() == "hand.safetensors");
}

}  // namespace

TEST_CASE("safetensors: the writer's bytes equal a header built from the specification") {
    const std::vector<float> a = {1.0f, -2.5f};
    const auto ab = floats_bytes(a);
    const std::vector<TensorData> ts = {{"a", DType::F32, {2}, ab}};
    const auto out = serialize_safetensors(ts);
    // serde_json's compact form, "__metadata__" first, padded with spaces to a multiple of 8.
    const std::string json = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    const auto expected = st_bytes(json, ab);
    REQUIRE(out.size() == expected.size());
    CHECK(out == expected);
    std::uint64_t n = 0;
    std::memcpy(&n, out.data(), 8);
    CHECK(n % 8 == 0);
    CHECK(n >= json.size());

    const SafetensorsFile f(out, "mem");
    CHECK(f.metadata().at("format") == "pt");
    const auto v = f.tensor("a");
    CHECK(v.dtype == DType::F32);
    CHECK(std::vector<std::uint64_t>(v.shape.begin(), v.shape.end()) == std::vector<std::uint64_t>{2});
    CHECK(to_float(v) == a);
    CHECK(v.data.data() == out.data() + 8 + n);  // a view, not a copy
}

TEST_CASE("safetensors: hand-built headers the reference reader accepts") {
    SUBCASE("no metadata, unknown fields ignored, tensors listed out of offset order") {
        std::vector<std::byte> data(12);
        const auto h = parse_st(st_bytes(
            R"({"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12],"extra":1},"a":{"shape":[2],"dtype":"F32","data_offsets":[0,8]}})",
            data));
        REQUIRE(h.tensors.size() == 2);
        CHECK(h.tensors[0].name == "a");
        CHECK(h.tensors[1].name == "b");
        CHECK(h.metadata.empty());
    }
    SUBCASE("empty and rank-0 tensors; null metadata; -0 and no padding") {
        const auto h = parse_st(st_bytes(
            R"({"__metadata__":null,"e":{"dtype":"F16","shape":[0,5],"data_offsets":[0,0]},"s":{"dtype":"I64","shape":[],"data_offsets":[-0,8]}})",
            std::vector<std::byte>(8), false));
        REQUIRE(h.tensors.size() == 2);
        CHECK(h.tensors[0].numel() == 0);
        CHECK(h.tensors[1].numel() == 1);
    }
    SUBCASE("serde's positional form of an entry") {
        const auto h = parse_st(st_bytes(R"({"p":["BF16",[3],[0,6]]})", std::vector<std::byte>(6)));
        REQUIRE(h.tensors.size() == 1);
        CHECK(h.tensors[0].dtype == DType::BF16);
    }
    SUBCASE("an empty file header") { CHECK(parse_st(st_bytes("{}", {})).tensors.empty()); }
}

TEST_CASE("safetensors: each validation rule rejects a file that breaks it") {
    SUBCASE("shorter than the size field") {
        std::vector<std::byte> f(7);
        expect_file_error([&] { parse_st(f); }, "shorter than the 8-byte header size");
    }
    SUBCASE("header size above 100,000,000") {
        Bytes b;
        b.put(std::uint64_t(100'000'001)).raw("{}      ");
        const auto e = expect_file_error([&] { parse_st(b.b); }, "exceeds the limit");
        CHECK(e.field() == "header size");
    }
    SUBCASE("header size beyond the end of the file (also a huge one)") {
        for (std::uint64_t n : {std::uint64_t(9), std::uint64_t(100'000'000)}) {
            Bytes b;
            b.put(n).raw("{}      ");
            expect_file_error([&] { parse_st(b.b); }, "bytes of header but the file has only 8");
        }
    }
    SUBCASE("not UTF-8") {
        expect_reject("{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "not valid UTF-8 JSON");
    }
    SUBCASE("not JSON / not an object / BOM / trailing garbage") {
        expect_reject("{\"a\":", 0, "not valid UTF-8 JSON");
        expect_reject("[1,2]", 0, "not a JSON object");
        expect_reject("\xEF\xBB\xBF{}", 0, "byte-order mark");
        expect_reject("{} x", 0, "not valid UTF-8 JSON");
    }
    SUBCASE("entry fields") {
        expect_reject(R"({"a":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", 4, "unknown dtype 'F17'");
        expect_reject(R"({"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4, "unknown dtype");
        expect_reject(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4, "tensor 'a': shape: missing");
        expect_reject(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, "not an unsigned");
        expect_reject(R"({"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", 4, "not an unsigned");
        expect_reject(R"({"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}})", 4,
                      "not an unsigned");
        expect_reject(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 8, "data_offsets");
        expect_reject(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4, "data_offsets");
        expect_reject(R"({"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4, "dtype: not a string");
        expect_reject(R"({"a":3})", 0, "not an object");
        expect_reject(R"({"a":["F32",[1]]})", 4, "3 elements");
        expect_reject(R"({"__metadata__":{"k":1}})", 0, "value of 'k' is not a string");
        expect_reject(R"({"__metadata__":[]})", 0, "__metadata__");
    }
    SUBCASE("duplicate keys and deep nesting") {
        expect_reject(
            R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
            1, "appears twice");
        expect_reject(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", 1, "appears twice");
        expect_reject(R"({"a":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}})", 1, "nested deeper");
        expect_reject(std::string(5000, '[') + std::string(5000, ']'), 0, "nested deeper");
    }
    SUBCASE("offsets: not from 0, gap, overlap, reversed") {
        expect_reject(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", 8,
                      "does not start where the previous");
        expect_reject(
            R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[5,9]}})",
            9, "tensor 'b': data_offsets");
        expect_reject(
            R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[3,7]}})",
            7, "gap, overlap");
        expect_reject(
            R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,0]}})",
            4, "reversed");
        // The same region claimed twice is an overlap too.
        expect_reject(
            R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
            4, "gap, overlap");
    }
    SUBCASE("byte counts") {
        expect_reject(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "need 12");
        expect_reject(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2, "not a whole number of bytes");
        expect_reject(R"({"a":{"dtype":"F6_E2M3","shape":[2],"data_offsets":[0,2]}})", 2,
                      "not a whole number of bytes");
        expect_reject(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0, "overflows");
        expect_reject(R"({"a":{"dtype":"U64","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0,
                      "bit count overflows");
    }
    SUBCASE("the data buffer must end at the file end") {
        expect_reject(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 3,
                      "truncated file or trailing bytes");
        expect_reject(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 5,
                      "truncated file or trailing bytes");
        expect_reject("{}", 1, "truncated file or trailing bytes");
    }
}

TEST_CASE("safetensors: every dtype round-trips through a file, bytes and shape intact") {
    ScratchDir dir("st_roundtrip");
    std::vector<std::vector<std::byte>> store;
    std::vector<TensorData> ts;
    std::uint32_t seed = 1;
    for (DType t : all_dtypes) {
        const std::vector<std::uint64_t> shape = {3, 8};  // 24 elements: whole bytes for 4 and 6 bits
        store.push_back(random_bytes(24 * bits_per_element(t) / 8, seed++));
        ts.push_back({"t." + std::string(dtype_name(t)), t, shape, store.back()});
    }
    std::vector<std::byte> scalar = random_bytes(8, 99);
    ts.push_back({"scalar", DType::F64, {}, scalar});
    ts.push_back({"empty", DType::BF16, {0, 7}, {}});
    write_safetensors(dir / "m.safetensors", ts, {{"author", "ptq"}, {"format", "pt"}});
    CHECK(dir.file_count() == 1);

    const SafetensorsFile f(dir / "m.safetensors");
    CHECK(f.metadata() == std::map<std::string, std::string>{{"author", "ptq"}, {"format", "pt"}});
    REQUIRE(f.tensors().size() == ts.size());
    for (const auto& t : ts) {
        CAPTURE(t.name);
        const auto v = f.tensor(t.name);
        CHECK(v.dtype == t.dtype);
        CHECK(std::vector<std::uint64_t>(v.shape.begin(), v.shape.end()) == t.shape);
        CHECK(std::equal(v.data.begin(), v.data.end(), t.data.begin(), t.data.end()));
        // The reference writer's order keeps each tensor aligned to its element size.
        const std::size_t esize = std::max<std::size_t>(1, bits_per_element(t.dtype) / 8);
        CHECK((v.data.data() - f.tensor(f.tensors()[0]).data.data()) % esize == 0);
        CHECK(f.header().data_offset() % 8 == 0);
    }
    // Typed in-place access: the right width, aligned in the mapping.
    CHECK(as_span<float>(f.tensor("t.F32")).size() == 24);
    {
        REQUIRE(ts[6].dtype == DType::BF16);
        const auto bits = as_span<std::uint16_t>(f.tensor("t.BF16"));
        CHECK(bits.size() == 24);
        CHECK(bits[1] == (std::to_integer<unsigned>(ts[6].data[2]) | std::to_integer<unsigned>(ts[6].data[3]) << 8));
    }
    expect_file_error([&] { (void)as_span<float>(f.tensor("t.F16")); }, "16-bit elements read as a 32-bit type");
    // Decreasing dtype order: U64 first, BOOL last among the non-empty ones.
    CHECK(f.tensors().front().dtype == DType::U64);
    expect_file_error([&] { (void)f.tensor("missing"); }, "tensor 'missing'");
}

TEST_CASE("safetensors: the writer refuses bad input and leaves no file behind") {
    ScratchDir dir("st_writer_errors");
    std::vector<std::byte> b8(8);
    const auto path = dir / "out.safetensors";
    expect_file_error(
        [&] {
            write_safetensors(path, std::vector<TensorData>{{"a", DType::F32, {3}, b8}});
        },
        "the shape needs 12");
    expect_file_error(
        [&] {
            write_safetensors(path, std::vector<TensorData>{{"a", DType::U8, {8}, b8}, {"a", DType::U8, {8}, b8}});
        },
        "name given twice");
    expect_file_error(
        [&] {
            write_safetensors(path, std::vector<TensorData>{{"__metadata__", DType::U8, {8}, b8}});
        },
        "reserved");
    expect_file_error(
        [&] {
            write_safetensors(path, std::vector<TensorData>{{"a", DType::F4, {3}, {}}});
        },
        "whole number of bytes");
    CHECK(dir.file_count() == 0);
    // An existing file is replaced only by a complete new one.
    write_safetensors(path, std::vector<TensorData>{{"a", DType::U8, {8}, b8}});
    expect_file_error(
        [&] {
            write_safetensors(path, std::vector<TensorData>{{"b", DType::F32, {3}, b8}});
        },
        "the shape needs");
    CHECK(SafetensorsFile(path).contains("a"));
    CHECK(dir.file_count() == 1);
    expect_file_error([&] { write_safetensors(dir / "no/such/dir/x.safetensors", std::vector<TensorData>{}); },
                      "create");
}

TEST_CASE("safetensors: float conversions") {
    SUBCASE("F16 and BF16: every bit pattern equals half.hpp") {
        std::vector<std::byte> bytes(65536 * 2);
        for (std::uint32_t i = 0; i < 65536; ++i) {
            const auto h = static_cast<std::uint16_t>(i);
            std::memcpy(bytes.data() + 2 * i, &h, 2);
        }
        for (DType t : {DType::F16, DType::BF16}) {
            const std::vector<TensorData> ts = {{"x", t, {65536}, bytes}};
            const auto file = serialize_safetensors(ts);
            const auto v = to_float(SafetensorsFile(file, "mem").tensor("x"));
            std::size_t bad = 0;
            for (std::uint32_t i = 0; i < 65536; ++i) {
                const float ref = t == DType::F16 ? ptq::half_bits_to_float(std::uint16_t(i))
                                                  : ptq::bf16_bits_to_float(std::uint16_t(i));
                if (!(std::isnan(ref) ? std::isnan(v[i])
                                      : std::bit_cast<std::uint32_t>(ref) == std::bit_cast<std::uint32_t>(v[i])))
                    ++bad;
            }
            CHECK(bad == 0);
        }
    }
    SUBCASE("to_matrix is row-major [shape0 x shape1]; F4 is refused") {
        const std::vector<float> a = {1, 2, 3, 4, 5, 6};
        const auto ab = floats_bytes(a);
        std::vector<std::byte> f4(3);
        const std::vector<TensorData> ts = {
            {"m", DType::F32, {2, 3}, ab}, {"v", DType::F32, {6}, ab}, {"q", DType::F4, {6}, f4}};
        const auto file = serialize_safetensors(ts);
        const SafetensorsFile f(file, "mem");
        const auto m = to_matrix(f.tensor("m"));
        CHECK(m.rows() == 2);
        CHECK(m.cols() == 3);
        CHECK(m(1, 0) == 4.0f);
        expect_file_error([&] { (void)to_matrix(f.tensor("v")); }, "a matrix needs rank 2");
        expect_file_error([&] { (void)to_float(f.tensor("q")); }, "F4 has no conversion to float");
    }
}

TEST_CASE("safetensors: sharded checkpoints through model.safetensors.index.json") {
    ScratchDir dir("st_sharded");
    std::vector<std::vector<std::byte>> store;
    std::vector<TensorData> ts;
    for (int i = 0; i < 5; ++i) {
        store.push_back(random_bytes(40, 100 + i));
        ts.push_back({"layer." + std::to_string(i) + ".weight", DType::F32, {10}, store.back()});
    }
    const auto paths = write_safetensors_sharded(dir.path, ts, {{"k", "v"}}, 100);
    REQUIRE(paths.size() == 4);  // 2 + 2 + 1 tensors of 40 bytes under 100 bytes, plus the index
    CHECK(paths[0].filename() == "model-00001-of-00003.safetensors");
    CHECK(paths[3].filename() == "model.safetensors.index.json");
    CHECK(dir.file_count() == 4);
    {
        std::ifstream in(paths[3]);
        const auto j = nlohmann::json::parse(in);
        CHECK(j["metadata"]["total_size"] == 200);
        CHECK(j["weight_map"]["layer.4.weight"] == "model-00003-of-00003.safetensors");
    }
    for (const auto& p : {dir.path, paths[3]}) {
        const SafetensorsCheckpoint ck(p);
        CHECK(ck.shard_count() == 3);
        CHECK(ck.size() == 5);
        CHECK(ck.index_metadata()["total_size"] == 200);
        for (const auto& t : ts) {
            const auto v = ck.tensor(t.name);
            CHECK(std::equal(v.data.begin(), v.data.end(), t.data.begin(), t.data.end()));
        }
        CHECK(ck.shard(1).metadata().at("k") == "v");
        expect_file_error([&] { (void)ck.tensor("nope"); }, "not in the checkpoint");
    }
    SUBCASE("one shard: model.safetensors, no index") {
        ScratchDir one("st_one_shard");
        const auto p1 = write_safetensors_sharded(one.path, ts, {}, 1 << 20);
        REQUIRE(p1.size() == 1);
        CHECK(p1[0].filename() == "model.safetensors");
        CHECK(SafetensorsCheckpoint(one.path).size() == 5);
    }
    SUBCASE("hostile or inconsistent index") {
        auto write_index = [&](const std::string& text) {
            std::ofstream(dir / "model.safetensors.index.json") << text;
        };
        write_index(R"({"weight_map":{"layer.0.weight":"../model-00001-of-00003.safetensors"}})");
        expect_file_error([&] { SafetensorsCheckpoint ck(dir.path); }, "not a plain file name");
        write_index(R"({"weight_map":{"layer.4.weight":"model-00001-of-00003.safetensors"}})");
        expect_file_error([&] { SafetensorsCheckpoint ck(dir.path); }, "is not in its shard");
        write_index(R"({"weight_map":{"a":"missing.safetensors"}})");
        expect_file_error([&] { SafetensorsCheckpoint ck(dir.path); }, "missing.safetensors");
        write_index(R"({"metadata":{}})");
        expect_file_error([&] { SafetensorsCheckpoint ck(dir.path); }, "weight_map");
        write_index(R"({"weight_map":)");
        expect_file_error([&] { SafetensorsCheckpoint ck(dir.path); }, "not valid JSON");
    }
}

TEST_CASE("MappedFile and SafetensorsFile on files that are not there, not regular or empty") {
    ScratchDir dir("mapped");
    const auto e1 = expect_file_error([&] { MappedFile m(dir / "absent.safetensors"); }, "No such file");
    CHECK(e1.field() == "open");
    expect_file_error([&] { MappedFile m(dir.path); }, "not a regular file");
    std::ofstream(dir / "empty.safetensors").close();
    const MappedFile m(dir / "empty.safetensors");
    CHECK(m.size() == 0);
    CHECK(m.bytes().empty());
    expect_file_error([&] { SafetensorsFile f(dir / "empty.safetensors"); }, "shorter than the 8-byte header size");
    std::vector<std::byte> b(8);
    const std::vector<TensorData> dup = {{"a", DType::U8, {8}, b}, {"a", DType::U8, {8}, b}};
    expect_file_error([&] { write_safetensors_sharded(dir.path, dup, {}, 8); }, "name given twice");
    CHECK(dir.file_count() == 1);
}
