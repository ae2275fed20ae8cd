// quantize_model for every weight format of weight_formats.hpp, defined in
// quantize_formats.cpp: false when r.weight is none of them.
#pragma once

#include "calibration.hpp"
#include "model.hpp"
#include "quantize_model.hpp"
#include "recipe.hpp"

namespace ptq::llama::detail {

bool quantize_any_format(Model&&, const RecipeSpec&, CalibData*, const QuantizeOptions&, QuantizedModel&);

}  // namespace ptq::llama::detail
