// core/inference/dense_avx2.cpp: six rows by eight outputs in twelve AVX2 accumulators, fused
// multiply-adds, weights streamed from contiguous panels. Only this file's functions carry the AVX2
// target, so the rest of Keel runs on any x86-64.
#include "dense_avx2.hpp"

#include <cstdlib>
#include <string_view>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KEEL_HAVE_AVX2_KERNEL 1
#endif

namespace keel::inference::detail {

namespace {
constexpr size_t kPanel = 8;  // outputs a panel holds: two 4-double registers
constexpr size_t kRows = 6;   // rows a block holds: 6 x 2 accumulators leave registers for W and h
}

bool cpu_has_avx2_fma() {
#ifdef KEEL_HAVE_AVX2_KERNEL
    // KEEL_BASELINE_ISA=1 keeps every machine on the baseline path (identical sums across a mixed fleet).
    static const bool yes = [] {
        const char* baseline = std::getenv("KEEL_BASELINE_ISA");
        if (baseline && std::string_view(baseline) == "1") return false;
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }();
    return yes;
#else
    return false;
#endif
}

std::vector<double> dense_panels(const std::vector<double>& w, size_t in, size_t out) {
    std::vector<double> panels;
    panels.reserve(in * (out - out % kPanel));
    for (size_t j = 0; j + kPanel <= out; j += kPanel)
        for (size_t a = 0; a < in; ++a) {
            auto row = w.begin() + static_cast<std::ptrdiff_t>(a * out + j);
            panels.insert(panels.end(), row, row + kPanel);
        }
    return panels;
}

#ifdef KEEL_HAVE_AVX2_KERNEL
namespace {

template <size_t R>
__attribute__((target("avx2,fma"))) void block(const double* h, size_t in, const double* panel, const double* b,
                                               double* y, size_t ldy) {
    __m256d lo[R], hi[R];
    for (size_t r = 0; r < R; ++r) {
        lo[r] = _mm256_loadu_pd(b);
        hi[r] = _mm256_loadu_pd(b + 4);
    }
    for (size_t a = 0; a < in; ++a, panel += kPanel) {
        __m256d w0 = _mm256_loadu_pd(panel), w1 = _mm256_loadu_pd(panel + 4);
        for (size_t r = 0; r < R; ++r) {
            __m256d v = _mm256_broadcast_sd(h + r * in + a);
            lo[r] = _mm256_fmadd_pd(v, w0, lo[r]);
            hi[r] = _mm256_fmadd_pd(v, w1, hi[r]);
        }
    }
    for (size_t r = 0; r < R; ++r) {
        _mm256_storeu_pd(y + r * ldy, lo[r]);
        _mm256_storeu_pd(y + r * ldy + 4, hi[r]);
    }
}

template <size_t R>
__attribute__((target("avx2,fma"))) void rows(const double* h, size_t in, const double* panels, const double* b,
                                              size_t out, double* y, size_t ldy) {
    for (size_t j = 0; j + kPanel <= out; j += kPanel) block<R>(h, in, panels + j * in, b + j, y + j, ldy);
}

} // namespace
#endif

void dense_rows_avx2(const double* h, size_t n, size_t in, const double* panels, const double* b, size_t out,
                     double* y, size_t ldy) {
#ifdef KEEL_HAVE_AVX2_KERNEL
    size_t i = 0;
    for (; i + kRows <= n; i += kRows) rows<kRows>(h + i * in, in, panels, b, out, y + i * ldy, ldy);
    for (; i < n; ++i) rows<1>(h + i * in, in, panels, b, out, y + i * ldy, ldy);
#else
    (void)h, (void)n, (void)in, (void)panels, (void)b, (void)out, (void)y, (void)ldy;
#endif
}

} // namespace keel::inference::detail
