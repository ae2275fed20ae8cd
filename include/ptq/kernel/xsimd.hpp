#pragma once
// Includes xsimd for ptq. GCC 12.1/12.2 warn (-Wuninitialized, -Wmaybe-uninitialized) inside
// their own AVX-512 intrinsic headers (`__m512i __Y = __Y;` in _mm512_undefined_*, GCC bug
// 105593, fixed in 12.3) wherever an intrinsic is inlined; the warning is attributed to the
// intrinsic header, so it is silenced here for the region of that include only. Include this
// header (directly or through ptq's headers) before any other inclusion of xsimd/immintrin.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <xsimd/xsimd.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
