// tests/cpp/support/count_allocations.hpp
// Counts heap allocations in the test binary that includes it (once: it replaces the global
// operator new), so a test can check that a hot path makes none:
//     long before = g_allocations.load(); lookup(...); EXPECT_EQ(g_allocations.load(), before);
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

inline std::atomic<long> g_allocations{0};

void* operator new(size_t size) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
