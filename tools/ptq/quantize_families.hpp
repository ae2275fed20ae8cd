// quantize_model for each family of weight formats (weight_formats.hpp), defined in
// quantize_formats.cpp: true when r.weight belongs to the family and was quantized.
#pragma once

#include "calibration.hpp"
#include "model.hpp"
#include "quantize_model.hpp"
#include "recipe.hpp"

namespace ptq::llama::detail {

bool quantize_int34(const Model&, const RecipeSpec&, CalibData*, const QuantizeOptions&, QuantizedModel&);
bool quantize_int_other(const Model&, const RecipeSpec&, CalibData*, const QuantizeOptions&, QuantizedModel&);
bool quantize_float_min(const Model&, const RecipeSpec&, CalibData*, const QuantizeOptions&, QuantizedModel&);
bool quantize_mx(const Model&, const RecipeSpec&, CalibData*, const QuantizeOptions&, QuantizedModel&);

}  // namespace ptq::llama::detail
