#pragma once
// ptq::io umbrella: model files in and out (safetensors, sharded safetensors, GGUF). Needs
// nlohmann_json (link ptq::io); <ptq/ptq.hpp> does not include it.
#include <ptq/io/atomic_file.hpp>
#include <ptq/io/convert.hpp>
#include <ptq/io/dtype.hpp>
#include <ptq/io/gguf.hpp>
#include <ptq/io/gguf_types.hpp>
#include <ptq/io/mapped_file.hpp>
#include <ptq/io/safetensors.hpp>
#include <ptq/io/safetensors_index.hpp>
