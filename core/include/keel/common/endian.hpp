// core/include/keel/common/endian.hpp
#pragma once

#include <bit>
#include <cstring>
#include <type_traits>

// Keel's binary formats are little-endian: the native model format ("KEELPRED",
// keel/inference/format.hpp) and feature segments ("KEELSEG1", keel/features/segment.hpp). Segments
// are memory-mapped and their value blocks read in place, with no per-value conversion, so they can
// only be read where host order is little-endian. Rather than write host order on a big-endian
// machine under a little-endian label, the build stops there.
static_assert(std::endian::native == std::endian::little,
              "Keel's binary formats (KEELPRED models, KEELSEG1 feature segments) are little-endian and read in "
              "place (mmap, memcpy) without byte swapping. A big-endian host needs byte-order conversion in "
              "keel/common/endian.hpp and in the segment readers before Keel can be built there.");

namespace keel::le {

//! A little-endian number (integer or floating point) read from bytes of any alignment.
template <typename T>
T load(const void* bytes) {
    static_assert(std::is_arithmetic_v<T>, "le::load reads numbers");
    T value;
    std::memcpy(&value, bytes, sizeof value);  // host order is little-endian: checked above
    return value;
}

//! Writes `value` as little-endian bytes at any alignment.
template <typename T>
void store(void* bytes, T value) {
    static_assert(std::is_arithmetic_v<T>, "le::store writes numbers");
    std::memcpy(bytes, &value, sizeof value);
}

} // namespace keel::le
