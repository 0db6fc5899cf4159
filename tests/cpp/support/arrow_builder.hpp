// tests/cpp/support/arrow_builder.hpp
#pragma once

// Arrow C Data Interface arrays and schemas built by hand, laid out as a producer such as pyarrow
// lays them out, for the tests of everything that imports Arrow data. Only the top-level structs
// count their releases (children are released by their parent, as the specification says).

#include "keel/common/arrow_c.hpp"
#include "keel/common/arrow_import.hpp"

#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <utility>
#include <vector>

namespace keel::testing {

inline int g_batch_releases = 0;   // top-level arrays released
inline int g_schema_releases = 0;  // top-level schemas released
inline int g_stream_releases = 0;

//! Builds arrays and schemas whose memory lives as long as the builder.
struct Arrow {
    std::deque<std::vector<uint8_t>> bytes;
    std::deque<std::vector<const void*>> buffers;
    std::deque<ArrowArray> arrays;
    std::deque<ArrowSchema> schemas;
    std::deque<std::vector<ArrowArray*>> array_kids;
    std::deque<std::vector<ArrowSchema*>> schema_kids;
    std::deque<std::string> strings;

    template <typename T>
    const void* buf(const std::vector<T>& v) {
        auto& b = bytes.emplace_back(v.size() * sizeof(T) + 1);
        std::memcpy(b.data(), v.data(), v.size() * sizeof(T));
        return b.data();
    }
    const void* bits(const std::vector<int>& v) {
        auto& b = bytes.emplace_back((v.size() + 7) / 8 + 1, 0);
        for (size_t i = 0; i < v.size(); ++i)
            if (v[i]) b[i / 8] |= uint8_t(1 << (i % 8));
        return b.data();
    }
    const void* chars(const std::string& s) { return buf(std::vector<char>(s.begin(), s.end())); }

    ArrowArray* array(int64_t length, int64_t nulls, std::vector<const void*> bufs, std::vector<ArrowArray*> kids = {},
                      int64_t offset = 0, ArrowArray* dictionary = nullptr) {
        ArrowArray& a = arrays.emplace_back();
        a = ArrowArray{};
        a.length = length;
        a.null_count = nulls;
        a.offset = offset;
        auto& b = buffers.emplace_back(std::move(bufs));
        a.n_buffers = int64_t(b.size());
        a.buffers = b.data();
        auto& k = array_kids.emplace_back(std::move(kids));
        a.n_children = int64_t(k.size());
        a.children = k.data();
        a.dictionary = dictionary;
        a.release = [](ArrowArray* x) { x->release = nullptr; };
        return &a;
    }
    ArrowSchema* schema(const std::string& format, const std::string& name, std::vector<ArrowSchema*> kids = {},
                        ArrowSchema* dictionary = nullptr) {
        ArrowSchema& s = schemas.emplace_back();
        s = ArrowSchema{};
        s.format = strings.emplace_back(format).c_str();
        s.name = strings.emplace_back(name).c_str();
        auto& k = schema_kids.emplace_back(std::move(kids));
        s.n_children = int64_t(k.size());
        s.children = k.data();
        s.dictionary = dictionary;
        s.release = [](ArrowSchema* x) { x->release = nullptr; };
        return &s;
    }

    struct Col {
        ArrowSchema* schema;
        ArrowArray* array;
    };
    // A record batch (struct array) of the columns; its release releases the children like a producer's.
    std::pair<ArrowSchema, ArrowArray> batch(const std::vector<Col>& cols, int64_t rows, int64_t offset = 0) {
        std::vector<ArrowSchema*> sk;
        std::vector<ArrowArray*> ak;
        for (const auto& c : cols) sk.push_back(c.schema), ak.push_back(c.array);
        ArrowSchema s = *schema("+s", "", sk);
        s.release = [](ArrowSchema* x) {
            ++g_schema_releases;
            x->release = nullptr;
        };
        ArrowArray a = *array(rows, 0, {nullptr}, ak, offset);
        a.release = [](ArrowArray* x) {
            for (int64_t i = 0; i < x->n_children; ++i)
                if (x->children[i]->release) x->children[i]->release(x->children[i]);
            ++g_batch_releases;
            x->release = nullptr;
        };
        return {s, a};
    }
    ImportedBatch import(const std::vector<Col>& cols, int64_t rows, int64_t offset = 0,
                         const ImportOptions& options = {}) {
        auto [s, a] = batch(cols, rows, offset);
        return keel::import_arrow(&s, &a, options);
    }
};

} // namespace keel::testing
