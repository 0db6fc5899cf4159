// core/inference/dense_avx2.hpp: dense layers for batches on CPUs with AVX2 and FMA, chosen at run time.
#pragma once

#include <cstddef>
#include <vector>

namespace keel::inference::detail {

//! True when this CPU runs AVX2 and FMA and KEEL_BASELINE_ISA is not 1 (checked once). Keel is built
//! for baseline x86-64; only the functions below use the wider instructions, and only after this says yes.
bool cpu_has_avx2_fma();

//! W [in x out] row-major as panels: W[:, j:j+8] contiguous (in x 8) for each full block of eight outputs.
std::vector<double> dense_panels(const std::vector<double>& w, size_t in, size_t out);

//! y[i, j] = b[j] + sum_a h[i, a] W[a, j] for n rows and the first out - out % 8 outputs (the others
//! are the caller's); y has `ldy` values a row. Call only when cpu_has_avx2_fma().
void dense_rows_avx2(const double* h, size_t n, size_t in, const double* panels, const double* b, size_t out,
                     double* y, size_t ldy);

} // namespace keel::inference::detail
