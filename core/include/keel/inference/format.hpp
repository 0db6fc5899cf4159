// core/include/keel/inference/format.hpp
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace keel::inference {

//! One named value of a model record (not plugins::Value, the Lua-facing variant): an array of int64, an array of float64, or a list of strings.
//! Scalars are arrays of length one; a single string is a list of one.
struct RecordValue {
    enum class Type : uint8_t { Int = 1, Real = 2, Strings = 3 };
    Type type = Type::Real;
    std::vector<int64_t> ints;
    std::vector<double> reals;
    std::vector<std::string> strings;

    static RecordValue of_ints(std::vector<int64_t> v) {
        RecordValue x; x.type = Type::Int; x.ints = std::move(v); return x;
    }
    static RecordValue of_reals(std::vector<double> v) {
        RecordValue x; x.type = Type::Real; x.reals = std::move(v); return x;
    }
    static RecordValue of_strings(std::vector<std::string> v) {
        RecordValue x; x.type = Type::Strings; x.strings = std::move(v); return x;
    }
    static RecordValue of_string(std::string s) { return of_strings({std::move(s)}); }
};

//! A model as data: dotted keys ("model.kind", "tree.threshold", "pre.0.mean") to values. Importers
//! (Python or C++) build a Record; build_predictor() validates it; the binary format stores it.
using Record = std::map<std::string, RecordValue, std::less<>>;

//! Current version of the binary format. Readers refuse newer versions with Corrupt.
inline constexpr uint32_t kFormatVersion = 1;

//! Binary format: "KEELPRED" magic, u32 version, u32 reserved, u64 body size, 64 hex chars of the
//! body's sha256, then the body (u32 entry count; per entry u16 key size, key, u8 type, u64 count,
//! payload: int64 or float64 values, or per string a u64 size and its bytes). Every number is
//! little-endian; Keel builds only on little-endian hosts, where that is host order
//! (keel/common/endian.hpp).
std::string serialize_record(const Record& record);

//! Parses and verifies bytes written by serialize_record. Truncated input, a bad magic, a future
//! version, a checksum mismatch or a malformed body raise Corrupt naming the reason.
Record parse_record(std::string_view bytes);

} // namespace keel::inference
