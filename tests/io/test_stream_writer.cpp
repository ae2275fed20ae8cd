// The streaming writers (SafetensorsStreamWriter, GgufStreamWriter): tensors written in any
// order give the file built by hand from the specification, byte for byte; the files read back
// through the readers; every misuse (unknown or repeated tensor, wrong byte count, missing
// tensor at commit, write after commit) is a ptq::file_error and leaves no file behind.
#include <algorithm>
#include <fstream>
#include <iterator>
#include <optional>

#include <doctest/doctest.h>

#include <ptq/io/gguf.hpp>
#include <ptq/io/safetensors.hpp>

#include "io_test_support.hpp"

using namespace ptq::io;
using namespace ptq_io_test;

namespace {

std::vector<std::byte> read_all(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    const std::vector<char> c{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::vector<std::byte> b(c.size());
    std::memcpy(b.data(), c.data(), c.size());
    return b;
}

}  // namespace

TEST_CASE("safetensors stream writer: any write order gives the file built from the specification") {
    ScratchDir dir("stream_st");
    const auto a = floats_bytes({1.0f, -2.0f, 3.5f});  // F32 [3]
    const auto h = random_bytes(2 * 4, 7);             // F16 [2, 2]
    const auto u = random_bytes(5, 8);                 // U8 [5]
    const std::vector<SafetensorsEntry> decl = {
        {"u", DType::U8, {5}}, {"a", DType::F32, {3}}, {"h", DType::F16, {2, 2}}, {"e", DType::F32, {0}}};
    // Reference order: F32 before F16 before U8 (decreasing dtype), then by name ("a" < "e").
    std::string json =
        R"({"__metadata__":{"author":"me","format":"pt"},"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
        R"("e":{"dtype":"F32","shape":[0],"data_offsets":[12,12]},)"
        R"("h":{"dtype":"F16","shape":[2,2],"data_offsets":[12,20]},"u":{"dtype":"U8","shape":[5],"data_offsets":[20,25]}})";
    json.resize((json.size() + 7) / 8 * 8, ' ');
    Bytes expected;
    expected.put(std::uint64_t(json.size())).raw(json);
    for (const auto* t : {&a, &h, &u}) expected.b.insert(expected.b.end(), t->begin(), t->end());

    for (int order = 0; order < 3; ++order) {
        CAPTURE(order);
        const auto path = dir / "m.safetensors";
        std::filesystem::remove(path);
        SafetensorsStreamWriter w(path, decl, {{"author", "me"}});
        CHECK(w.size() == 4);
        CHECK(w.file_size() == expected.b.size());
        CHECK(w.nbytes(w.index("h")) == 8);
        CHECK(w.file_offset(w.index("a")) == 8 + json.size());
        if (order == 0) {  // declaration order, by index
            w.write(0, u);
            w.write(1, a);
            w.write(2, h);
            w.write(3, {});
        } else if (order == 1) {  // reverse, by name
            w.write("e", {});
            w.write("h", h);
            w.write("a", a);
            w.write("u", u);
        } else {  // mixed
            w.write("a", a);
            w.write(3, {});
            w.write("u", u);
            w.write(2, h);
        }
        CHECK(!std::filesystem::exists(path));  // only the temporary file until commit
        w.commit();
        CHECK(read_all(path) == expected.b);
        CHECK(dir.file_count() == 1);
    }
    // The all-at-once writer is the same file; the reader gives the tensors back.
    const auto p2 = dir / "w.safetensors";
    write_safetensors(p2,
                      std::vector<TensorData>{{"u", DType::U8, {5}, u},
                                              {"a", DType::F32, {3}, a},
                                              {"h", DType::F16, {2, 2}, h},
                                              {"e", DType::F32, {0}, {}}},
                      {{"author", "me"}});
    CHECK(read_all(p2) == expected.b);
    const SafetensorsFile f(p2);
    CHECK(to_float(f.tensor("a")) == std::vector<float>{1.0f, -2.0f, 3.5f});
    const auto hv = f.tensor("h");
    CHECK(std::equal(hv.data.begin(), hv.data.end(), h.begin(), h.end()));
    CHECK(f.tensor("e").data.empty());
}

TEST_CASE("gguf stream writer: any write order gives the file built from the specification") {
    ScratchDir dir("stream_gguf");
    const auto x = floats_bytes({1, 2, 3, 4, 5});  // F32 [5]: 20 bytes, padded to 32
    const auto q = random_bytes(18 * 2, 3);        // Q4_0 [32, 2]: 2 blocks
    const auto s = random_bytes(6, 4);             // I16 [3]
    const GgufMetadata kv = {{"general.architecture", GgufValue("llama")},
                             {"n", GgufValue(std::vector<std::int32_t>{7, -8})}};
    const std::vector<GgufEntry> decl = {
        {"x", GgmlType::F32, {5}}, {"q", GgmlType::Q4_0, {32, 2}}, {"s", GgmlType::I16, {3}}};
    Bytes e;
    e.raw("GGUF").put(std::uint32_t(3)).put(std::int64_t(3)).put(std::int64_t(2));
    e.str("general.architecture").put(std::int32_t(8)).str("llama");
    e.str("n")
        .put(std::int32_t(9))
        .put(std::int32_t(5))
        .put(std::uint64_t(2))
        .put(std::int32_t(7))
        .put(std::int32_t(-8));
    auto info = [&](const std::string& name, std::vector<std::int64_t> ne, std::int32_t type, std::uint64_t off) {
        e.str(name).put(std::uint32_t(ne.size()));
        for (auto d : ne) e.put(d);
        e.put(type).put(off);
    };
    info("x", {5}, 0, 0);
    info("q", {32, 2}, 2, 32);
    info("s", {3}, 25, 96);  // I16; 36 bytes of q padded to 64
    e.pad_to(32);
    const std::size_t data_offset = e.b.size();
    for (const auto* t : {&x, &q, &s}) {
        e.b.insert(e.b.end(), t->begin(), t->end());
        e.pad_to(32);
    }
    for (int order = 0; order < 2; ++order) {
        CAPTURE(order);
        const auto path = dir / "m.gguf";
        GgufStreamWriter w(path, kv, decl);
        CHECK(w.file_size() == e.b.size());
        CHECK(w.file_offset(1) == data_offset + 32);
        CHECK(w.nbytes(1) == 36);
        if (order == 0) {
            w.write(0, x);
            w.write(1, q);
            w.write(2, s);
        } else {
            w.write("s", s);
            w.write("q", q);
            w.write("x", x);
        }
        w.commit();
        CHECK(read_all(path) == e.b);
    }
    const auto p2 = dir / "w.gguf";
    write_gguf(p2, kv,
               std::vector<GgufTensorData>{
                   {"x", GgmlType::F32, {5}, x}, {"q", GgmlType::Q4_0, {32, 2}, q}, {"s", GgmlType::I16, {3}, s}});
    CHECK(read_all(p2) == e.b);
    const GgufFile f(p2);
    CHECK(to_float(f.tensor("x")) == std::vector<float>{1, 2, 3, 4, 5});
    const auto qv = f.tensor("q");
    CHECK(std::equal(qv.data.begin(), qv.data.end(), q.begin(), q.end()));
    CHECK(f.find("n")->get<std::vector<std::int32_t>>() == std::vector<std::int32_t>{7, -8});
}

TEST_CASE("stream writers: misuse is a file_error and leaves no file behind") {
    ScratchDir dir("stream_errors");
    const auto b8 = random_bytes(8, 1);
    const std::vector<SafetensorsEntry> sdecl = {{"a", DType::F32, {2}}, {"b", DType::U8, {8}}};
    const std::vector<GgufEntry> gdecl = {{"a", GgmlType::F32, {2}}, {"b", GgmlType::I8, {8}}};

    SUBCASE("safetensors") {
        const auto path = dir / "x.safetensors";
        {
            SafetensorsStreamWriter w(path, sdecl);
            CHECK(dir.file_count() == 1);  // the temporary file
            expect_file_error([&] { w.write("c", b8); }, "tensor 'c': was not declared");
            expect_file_error([&] { w.write(2, b8); }, "index out of range (2 tensors declared)");
            expect_file_error([&] { w.write("a", std::span(b8).first(4)); }, "4 bytes given, the shape needs 8");
            w.write("a", b8);
            expect_file_error([&] { w.write("a", b8); }, "tensor 'a': written twice");
            const auto e = expect_file_error([&] { w.commit(); }, "tensor 'b': declared but never written");
            CHECK(e.file() == path.string());
        }  // destroyed without commit
        CHECK(dir.file_count() == 0);
        {
            SafetensorsStreamWriter w(path, sdecl);
            w.write(1, b8);
            w.write(0, b8);
            w.commit();
            expect_file_error([&] { w.write(0, b8); }, "already committed");
            expect_file_error([&] { w.commit(); }, "already committed");
        }
        CHECK(SafetensorsFile(path).contains("b"));
        // A failed rewrite leaves the old file as it was.
        { SafetensorsStreamWriter w(path, std::vector<SafetensorsEntry>{{"c", DType::U8, {8}}}); }
        CHECK(SafetensorsFile(path).contains("a"));
        CHECK(dir.file_count() == 1);
        // Bad declarations create no file at all.
        expect_file_error(
            [&] {
                SafetensorsStreamWriter w(dir / "y.safetensors", std::vector<SafetensorsEntry>{sdecl[0], sdecl[0]});
            },
            "name given twice");
        expect_file_error(
            [&] {
                SafetensorsStreamWriter w(dir / "y.safetensors", std::vector<SafetensorsEntry>{{"f", DType::F4, {3}}});
            },
            "whole number of bytes");
        CHECK(dir.file_count() == 1);
    }
    SUBCASE("gguf") {
        const auto path = dir / "x.gguf";
        {
            GgufStreamWriter w(path, {}, gdecl);
            expect_file_error([&] { w.write("c", b8); }, "tensor 'c': was not declared");
            expect_file_error([&] { w.write(5, b8); }, "index out of range");
            expect_file_error([&] { w.write("b", std::span(b8).first(7)); }, "7 bytes given, the shape needs 8");
            w.write("b", b8);
            expect_file_error([&] { w.write(1, b8); }, "written twice");
            expect_file_error([&] { w.commit(); }, "tensor 'a': declared but never written");
        }
        CHECK(dir.file_count() == 0);
        expect_file_error(
            [&] {
                GgufStreamWriter w(path, {}, std::vector<GgufEntry>{{"q", GgmlType::Q8_0, {16}}});
            },
            "not a multiple of the block size");
        expect_file_error([&] { GgufStreamWriter w(path, GgufMetadata{{"", GgufValue(1.0f)}}, gdecl); }, "empty key");
        CHECK(dir.file_count() == 0);
        GgufStreamWriter w(path, {}, gdecl);
        w.write(0, b8);
        w.write(1, b8);
        w.commit();
        expect_file_error([&] { w.write(0, b8); }, "already committed");
        CHECK(GgufFile(path).tensors().size() == 2);
    }
}
