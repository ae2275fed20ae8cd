#pragma once
// Sharded safetensors checkpoints: `model.safetensors.index.json`
// ({"metadata": {...}, "weight_map": {tensor: shard file}}) next to the shard files, as written
// by transformers' save_pretrained. A reader that opens every shard (memory-mapped, validated)
// and a writer that splits tensors into shards of at most a given size.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <ptq/error.hpp>
#include <ptq/io/atomic_file.hpp>
#include <ptq/io/safetensors.hpp>

namespace ptq::io {

/// File name of the index of a sharded checkpoint.
inline constexpr std::string_view safetensors_index_name = "model.safetensors.index.json";

/// A checkpoint of one or more safetensors files.
class SafetensorsCheckpoint {
public:
    /// Opens `path`: a `*.safetensors` file, an index JSON file, or a directory holding
    /// `model.safetensors.index.json` (preferred) or `model.safetensors`. With an index, every
    /// shard it names is opened and validated; shard names must be plain file names in the
    /// index's directory, and every tensor of the weight map must exist in its shard (tensors
    /// of a shard that the map does not list are not exposed). Throws ptq::file_error.
    explicit SafetensorsCheckpoint(const std::filesystem::path& path) {
        namespace fs = std::filesystem;
        fs::path p = path;
        if (fs::is_directory(p)) {
            if (fs::exists(p / safetensors_index_name)) p /= safetensors_index_name;
            else if (fs::exists(p / "model.safetensors")) p /= "model.safetensors";
            else
                throw file_error(path.string(), "open",
                                 "no model.safetensors.index.json or model.safetensors in the directory");
        }
        if (p.extension() == ".json") open_index(p);
        else {
            shards_.push_back(std::make_unique<SafetensorsFile>(p));
            for (const auto& t : shards_[0]->tensors()) where_.emplace(t.name, 0);
        }
    }

    /// Names of all tensors, sorted.
    std::vector<std::string> names() const {
        std::vector<std::string> v;
        v.reserve(where_.size());
        for (const auto& [k, i] : where_) v.push_back(k);
        return v;
    }
    std::size_t size() const noexcept { return where_.size(); }
    bool contains(std::string_view name) const { return where_.find(name) != where_.end(); }
    /// The tensor called `name`; throws ptq::file_error (field "tensor '<name>'") if absent.
    TensorView tensor(std::string_view name) const {
        auto it = where_.find(name);
        if (it == where_.end())
            throw file_error(index_path_, "tensor '" + std::string(name) + "'", "not in the checkpoint");
        return shards_[it->second]->tensor(name);
    }
    std::size_t shard_count() const noexcept { return shards_.size(); }
    const SafetensorsFile& shard(std::size_t i) const { return *shards_.at(i); }
    /// The index's "metadata" object (null without an index).
    const nlohmann::json& index_metadata() const noexcept { return index_metadata_; }

private:
    void open_index(const std::filesystem::path& p) {
        index_path_ = p.string();
        auto fail = [&](const std::string& field, const std::string& what) -> void {
            throw file_error(index_path_, field, what);
        };
        std::ifstream in(p, std::ios::binary);
        if (!in) fail("open", "cannot open");
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(text);
        } catch (const nlohmann::json::exception& e) {
            fail("index", std::string("not valid JSON: ") + e.what());
        }
        if (!j.is_object()) fail("index", "not a JSON object");
        if (auto m = j.find("metadata"); m != j.end()) index_metadata_ = *m;
        auto wm = j.find("weight_map");
        if (wm == j.end() || !wm->is_object()) fail("weight_map", "missing or not an object");
        std::map<std::string, std::size_t> shard_of_file;
        for (auto it = wm->begin(); it != wm->end(); ++it) {
            if (!it.value().is_string()) fail("weight_map", "shard of '" + it.key() + "' is not a string");
            const std::string f = it.value().get<std::string>();
            if (f.empty() || f == "." || f == ".." || f.find('/') != std::string::npos ||
                f.find('\0') != std::string::npos)
                fail("weight_map", "shard '" + f + "' of '" + it.key() + "' is not a plain file name");
            auto [si, inserted] = shard_of_file.try_emplace(f, shards_.size());
            if (inserted) shards_.push_back(std::make_unique<SafetensorsFile>(p.parent_path() / f));
            if (!shards_[si->second]->contains(it.key()))
                fail("weight_map", "tensor '" + it.key() + "' is not in its shard '" + f + "'");
            where_.emplace(it.key(), si->second);
        }
    }

    std::string index_path_;
    std::vector<std::unique_ptr<SafetensorsFile>> shards_;
    std::map<std::string, std::size_t, std::less<>> where_;
    nlohmann::json index_metadata_;
};

/// Writes `tensors` into `dir` as shards of at most `max_shard_bytes` bytes of tensor data each
/// (a tensor larger than that gets a shard of its own), in the given order:
/// `<prefix>-00001-of-0000N.safetensors` plus `<prefix>.safetensors.index.json` with
/// {"metadata": {"total_size": bytes}, "weight_map": {...}}; a single shard is written as
/// `<prefix>.safetensors` without an index (transformers' convention). Every shard gets
/// `metadata` (plus "format": "pt"). All files are written to temporary files first and renamed
/// only when all were written. Returns the paths written. Throws ptq::file_error.
inline std::vector<std::filesystem::path> write_safetensors_sharded(const std::filesystem::path& dir,
                                                                    std::span<const TensorData> tensors,
                                                                    const std::map<std::string, std::string>& metadata,
                                                                    std::uint64_t max_shard_bytes,
                                                                    const std::string& prefix = "model") {
    if (max_shard_bytes == 0) throw file_error(dir.string(), "max_shard_bytes", "must be positive");
    std::set<std::string_view> names;
    for (const auto& t : tensors)
        if (!names.insert(t.name).second) throw file_error(dir.string(), "tensor '" + t.name + "'", "name given twice");
    std::vector<std::vector<TensorData>> groups;
    std::uint64_t cur = 0, total = 0;
    for (const auto& t : tensors) {
        if (groups.empty() || (cur > 0 && cur + t.data.size() > max_shard_bytes)) {
            groups.emplace_back();
            cur = 0;
        }
        groups.back().push_back(t);
        cur += t.data.size();
        total += t.data.size();
    }
    if (groups.empty()) groups.emplace_back();
    const std::size_t n = groups.size();
    std::vector<std::filesystem::path> paths;
    std::vector<std::unique_ptr<SafetensorsStreamWriter>> shards;
    std::unique_ptr<AtomicFile> index;
    nlohmann::ordered_json wm = nlohmann::ordered_json::object();
    for (std::size_t i = 0; i < n; ++i) {
        std::string name = prefix + ".safetensors";
        if (n > 1) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu.safetensors", i + 1, n);
            name = prefix + buf;
        }
        const std::filesystem::path path = dir / name;
        auto w = std::make_unique<SafetensorsStreamWriter>(path, detail::safetensors_entries(groups[i]), metadata);
        for (std::size_t k = 0; k < groups[i].size(); ++k) w->write(k, groups[i][k].data);
        for (const auto& t : groups[i]) wm[t.name] = name;
        shards.push_back(std::move(w));
        paths.push_back(path);
    }
    if (n > 1) {
        const std::filesystem::path ipath = dir / (prefix + ".safetensors.index.json");
        nlohmann::ordered_json idx;
        idx["metadata"] = {{"total_size", total}};
        idx["weight_map"] = std::move(wm);
        const std::string text = idx.dump(2) + "\n";
        index = std::make_unique<AtomicFile>(ipath);
        index->write(text.data(), text.size());
        paths.push_back(ipath);
    }
    for (auto& w : shards) w->commit();
    if (index) index->commit();
    return paths;
}

}  // namespace ptq::io
