#pragma once
// ptq: header-only post-training quantization for LLMs. Umbrella header.
#include <ptq/error.hpp>
#include <ptq/fwd.hpp>
#include <ptq/parallel.hpp>

#include <ptq/format/concepts.hpp>
#include <ptq/format/e8m0.hpp>
#include <ptq/format/float32.hpp>
#include <ptq/format/half.hpp>
#include <ptq/format/int_format.hpp>
#include <ptq/format/int_min_format.hpp>
#include <ptq/format/minifloat.hpp>
#include <ptq/format/mx_fp.hpp>
#include <ptq/format/mx_int.hpp>
#include <ptq/format/options.hpp>
#include <ptq/format/range.hpp>
#include <ptq/format/rounding.hpp>
#include <ptq/format/scale_storage.hpp>

#include <ptq/granularity/granularity.hpp>

#include <ptq/observe/clip_search.hpp>

#include <ptq/kernel/gemv.hpp>
#include <ptq/kernel/gemv_reference.hpp>
#include <ptq/kernel/kernels.hpp>
#include <ptq/kernel/packing.hpp>
#include <ptq/kernel/reference.hpp>

#include <ptq/gemv.hpp>
#include <ptq/quantize.hpp>
#include <ptq/quantized_matrix.hpp>

#include <ptq/algo/activation.hpp>
#include <ptq/algo/awq.hpp>
#include <ptq/algo/lqer.hpp>
#include <ptq/algo/pipeline.hpp>
#include <ptq/algo/rtn.hpp>
#include <ptq/algo/smooth_quant.hpp>
#include <ptq/algo/svd.hpp>

#include <ptq/metric/metrics.hpp>
#include <ptq/metric/output_error.hpp>

#include <ptq/calib/calibration_stats.hpp>
#include <ptq/algo/gptaq.hpp>
#include <ptq/algo/gptq.hpp>
#include <ptq/algo/coordinate_descent.hpp>
#include <ptq/transform/hadamard.hpp>
#include <ptq/transform/random_orthogonal.hpp>
#include <ptq/transform/rotation.hpp>
