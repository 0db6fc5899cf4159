// core/inference/format.cpp
#include "keel/inference/format.hpp"

#include "keel/common/endian.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/artifact_store.hpp"

#include <cstring>
#include <vector>

namespace keel::inference {

namespace {

constexpr char kMagic[8] = {'K', 'E', 'E', 'L', 'P', 'R', 'E', 'D'};
constexpr size_t kDigestSize = 64;
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8 + kDigestSize;

// Every number in the format is little-endian (keel/common/endian.hpp).
template <typename T>
void put(std::string& out, T v) {
    char buf[sizeof(T)];
    le::store(buf, v);
    out.append(buf, sizeof(T));
}

class Reader {
public:
    explicit Reader(std::string_view data) : data_(data) {}
    template <typename T>
    T get(const char* what) {
        need(sizeof(T), what);
        T v = le::load<T>(data_.data() + pos_);
        pos_ += sizeof(T);
        return v;
    }
    std::string_view bytes(size_t n, const char* what) {
        need(n, what);
        auto v = data_.substr(pos_, n);
        pos_ += n;
        return v;
    }
    bool done() const { return pos_ == data_.size(); }
    size_t pos() const { return pos_; }
    size_t size() const { return data_.size(); }

private:
    void need(size_t n, const char* what) {
        if (n > data_.size() - pos_)
            throw_error(ErrorKind::Corrupt, "predictor body is malformed: {} at byte {} runs past the end ({} bytes)",
                        what, pos_, data_.size());
    }
    std::string_view data_;
    size_t pos_ = 0;
};

// Refuses an entry's count of values when the body could not hold that many (each takes at least 8
// bytes), before anything is allocated for them.
void check_count(const Reader& r, uint64_t n, const std::string& key, const char* noun) {
    if (n > r.size() / 8) throw_error(ErrorKind::Corrupt, "predictor entry '{}' claims {} {}", key, n, noun);
}

// An array of n 8-byte numbers, copied whole: host order is the format's (little-endian, checked at
// build time).
template <typename T>
std::vector<T> read_array(Reader& r, uint64_t n, const char* what) {
    static_assert(sizeof(T) == 8);
    auto raw = r.bytes(n * 8, what);
    std::vector<T> out(n);
    if (n) std::memcpy(out.data(), raw.data(), n * 8);  // an empty vector's data() may be null
    return out;
}

} // namespace

std::string serialize_record(const Record& record) {
    std::string body;
    put<uint32_t>(body, static_cast<uint32_t>(record.size()));
    for (const auto& [key, value] : record) {
        if (key.size() > 0xffff) throw_error(ErrorKind::InvalidArgument, "record key of {} bytes is too long", key.size());
        put<uint16_t>(body, static_cast<uint16_t>(key.size()));
        body.append(key);
        put<uint8_t>(body, static_cast<uint8_t>(value.type));
        switch (value.type) {
        case RecordValue::Type::Int:
            put<uint64_t>(body, value.ints.size());
            // Arrays are copied whole: host order is the format's (little-endian, checked at build time).
            body.append(reinterpret_cast<const char*>(value.ints.data()), value.ints.size() * 8);
            break;
        case RecordValue::Type::Real:
            put<uint64_t>(body, value.reals.size());
            body.append(reinterpret_cast<const char*>(value.reals.data()), value.reals.size() * 8);
            break;
        case RecordValue::Type::Strings:
            put<uint64_t>(body, value.strings.size());
            for (const auto& s : value.strings) {
                put<uint64_t>(body, s.size());
                body.append(s);
            }
            break;
        }
    }
    std::string out;
    out.reserve(kHeaderSize + body.size());
    out.append(kMagic, 8);
    put<uint32_t>(out, kFormatVersion);
    put<uint32_t>(out, 0);
    put<uint64_t>(out, body.size());
    out.append(storage::sha256_hex(body));
    out.append(body);
    return out;
}

Record parse_record(std::string_view bytes) {
    if (bytes.size() < kHeaderSize)
        throw_error(ErrorKind::Corrupt, "predictor bytes are truncated: {} bytes, the header alone is {}", bytes.size(),
                    kHeaderSize);
    if (std::memcmp(bytes.data(), kMagic, 8) != 0)
        throw_error(ErrorKind::Corrupt, "not a Keel predictor: the bytes do not start with the magic 'KEELPRED'");
    Reader header(bytes.substr(8, kHeaderSize - 8));
    auto version = header.get<uint32_t>("version");
    header.get<uint32_t>("reserved");
    auto body_size = header.get<uint64_t>("body size");
    auto digest = header.bytes(kDigestSize, "digest");
    if (version == 0 || version > kFormatVersion)
        throw_error(ErrorKind::Corrupt,
                    "predictor format version {} is not readable by this Keel (it reads up to version {}): upgrade "
                    "Keel to load it",
                    version, kFormatVersion);
    auto body = bytes.substr(kHeaderSize);
    if (body.size() < body_size)
        throw_error(ErrorKind::Corrupt, "predictor bytes are truncated: the body has {} of its {} bytes", body.size(),
                    body_size);
    if (body.size() > body_size)
        throw_error(ErrorKind::Corrupt, "predictor bytes have {} unexpected trailing bytes", body.size() - body_size);
    if (storage::sha256_hex(body) != digest)
        throw_error(ErrorKind::Corrupt, "predictor checksum mismatch: the bytes were altered after they were written");

    Reader r(body);
    Record record;
    auto count = r.get<uint32_t>("entry count");
    for (uint32_t i = 0; i < count; ++i) {
        auto key_size = r.get<uint16_t>("key size");
        std::string key(r.bytes(key_size, "key"));
        auto type = r.get<uint8_t>("type");
        auto n = r.get<uint64_t>("value count");
        RecordValue v;
        switch (type) {
        case static_cast<uint8_t>(RecordValue::Type::Int):
            check_count(r, n, key, "values");
            v.type = RecordValue::Type::Int;
            v.ints = read_array<int64_t>(r, n, "int values");
            break;
        case static_cast<uint8_t>(RecordValue::Type::Real):
            check_count(r, n, key, "values");
            v.type = RecordValue::Type::Real;
            v.reals = read_array<double>(r, n, "real values");
            break;
        case static_cast<uint8_t>(RecordValue::Type::Strings): {
            check_count(r, n, key, "strings");
            v.type = RecordValue::Type::Strings;
            v.strings.reserve(n);
            for (uint64_t j = 0; j < n; ++j) {
                auto size = r.get<uint64_t>("string size");
                v.strings.emplace_back(r.bytes(size, "string"));
            }
            break;
        }
        default:
            throw_error(ErrorKind::Corrupt, "predictor entry '{}' has unknown value type {}", key, type);
        }
        record.emplace(std::move(key), std::move(v));
    }
    if (!r.done()) throw_error(ErrorKind::Corrupt, "predictor body has trailing bytes after {} entries", count);
    return record;
}

} // namespace keel::inference
