// core/features/segment.cpp
#include "keel/features/segment.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/endian.hpp"
#include "keel/common/error.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <xxh_x86dispatch.h>  // XXH3 with the widest SIMD the CPU has, chosen at run time

#include <cstring>

namespace fs = std::filesystem;

namespace keel::features {

namespace {

constexpr char kMagic[8] = {'K', 'E', 'E', 'L', 'S', 'E', 'G', '1'};
// Version 2 ends with an XXH3-64 checksum of every byte before it; version 1 (Keel before the
// checksum) has none and is still read, with every structural check but no detection of flipped data.
constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kOldestFormatVersion = 1;
constexpr size_t kAlign = 64;
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8 + 8;
constexpr size_t kMinSize = kHeaderSize + 8;  // a version 1 file with no columns
// name size, dtype, dim, four block offsets/lengths: a directory entry with an empty name.
constexpr size_t kMinDirEntry = 2 + 1 + 4 + 4 * 8;
// Rows are addressed as uint32 by the readers (row permutations, join references).
constexpr uint64_t kMaxRows = UINT32_MAX;
constexpr const char* kRecoveryHint =
    ". Restore the file from a backup, or drop the view's data and ingest it again (an online snapshot is "
    "rebuilt by materialize)";

// Accumulates the file in memory-sized pieces through a plain fd (buffered by us), hashing every
// byte on the way for the checksum trailer.
class Sink {
public:
    Sink() : hash_(XXH3_createState(), &XXH3_freeState) {
        if (!hash_) throw std::bad_alloc();
        XXH3_64bits_reset(hash_.get());
    }
    virtual ~Sink() = default;
    virtual void write(const void* data, size_t size) = 0;
    size_t pos = 0;
    void put(const void* data, size_t size) {
        if (size) {
            XXH3_64bits_update_dispatch(hash_.get(), data, size);
            write(data, size);
        }
        pos += size;
    }
    //! Appends the checksum of everything put so far (itself unhashed): the file's last 8 bytes.
    void put_checksum() {
        char sum[8];
        le::store(sum, uint64_t(XXH3_64bits_digest(hash_.get())));
        write(sum, 8);
        pos += 8;
    }
    //! A header, directory or trailer number, little-endian like every number in the file.
    template <typename T>
    void put_num(T value) {
        char bytes[sizeof(T)];
        le::store(bytes, value);
        put(bytes, sizeof(T));
    }
    void pad() {
        static const char zeros[kAlign] = {};
        size_t rem = pos % kAlign;
        if (rem) put(zeros, kAlign - rem);
    }

private:
    std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> hash_;
};

class FdSink : public Sink {
public:
    FdSink(int fd, const fs::path& path) : fd_(fd), path_(path) { buffer_.reserve(1 << 20); }
    void write(const void* data, size_t size) override {
        if (buffer_.size() + size > (1 << 20)) flush();
        if (size >= (1 << 20)) {
            raw(data, size);
        } else {
            buffer_.insert(buffer_.end(), (const char*)data, (const char*)data + size);
        }
    }
    void flush() {
        raw(buffer_.data(), buffer_.size());
        buffer_.clear();
    }

private:
    void raw(const void* data, size_t size) {
        const char* p = static_cast<const char*>(data);
        while (size) {
            ssize_t n = ::write(fd_, p, size);
            if (n < 0) {
                if (errno == EINTR) continue;
                throw_error(ErrorKind::Internal, "writing feature segment {} failed: {}", path_.string(), std::strerror(errno));
            }
            p += n;
            size -= size_t(n);
        }
    }
    int fd_;
    fs::path path_;
    std::vector<char> buffer_;
};

class StringSink : public Sink {
public:
    void write(const void* data, size_t size) override { out.append((const char*)data, size); }
    std::string out;
};

struct DirEntry {
    std::string name;
    DType dtype;
    uint32_t dim;
    uint64_t values_off = 0, values_len = 0, offsets_off = 0, valid_off = 0;
};

// Writes the whole segment through `sink`, permuting rows by `order` when given.
void write_segment(Sink& sink, const BatchView& batch, const std::vector<uint32_t>& order) {
    const size_t rows = order.empty() ? batch.rows : order.size();
    sink.put(kMagic, 8);
    sink.put_num(kFormatVersion);
    sink.put_num(uint32_t(batch.columns.size()));
    sink.put_num(uint64_t(rows));
    // The directory offset is only known at the end: the header keeps a zero placeholder and the
    // trailer (directory offset, then checksum) holds it.
    sink.put_num(uint64_t(0));
    std::vector<DirEntry> dir;
    std::vector<uint8_t> scratch;
    for (const ColumnView& col : batch.columns) {
        DirEntry e{col.name, col.dtype, col.dim};
        sink.pad();
        e.values_off = sink.pos;
        if (col.dtype == DType::String) {
            // values: the string bytes in row order; offsets follow.
            std::vector<int64_t> offsets(rows + 1);
            offsets[0] = 0;
            const char* bytes = static_cast<const char*>(col.values);
            for (size_t i = 0; i < rows; ++i) {
                size_t r = order.empty() ? i : order[i];
                int64_t len = col.offsets[r + 1] - col.offsets[r];
                sink.put(bytes + col.offsets[r], size_t(len));
                offsets[i + 1] = offsets[i] + len;
            }
            e.values_len = uint64_t(offsets[rows]);
            sink.pad();
            e.offsets_off = sink.pos;
            sink.put(offsets.data(), offsets.size() * sizeof(int64_t));
        } else {
            size_t width = dtype_width(col.dtype, col.dim);
            e.values_len = width * rows;
            const uint8_t* src = static_cast<const uint8_t*>(col.values);
            // Values go out in host order, which is the file's (little-endian, keel/common/endian.hpp).
            if (order.empty()) {
                sink.put(src, width * rows);
            } else {
                const size_t chunk = 1 << 16;
                scratch.resize(chunk * width);
                for (size_t start = 0; start < rows; start += chunk) {
                    size_t end = std::min(rows, start + chunk);
                    uint8_t* dst = scratch.data();
                    // Random reads: prefetch a few rows ahead to keep several cache misses in flight.
                    if (width == 8) {
                        for (size_t i = start; i < end; ++i, dst += 8) {
                            if (i + 16 < end) __builtin_prefetch(src + size_t(order[i + 16]) * 8);
                            std::memcpy(dst, src + size_t(order[i]) * 8, 8);
                        }
                    } else if (width == 4) {
                        for (size_t i = start; i < end; ++i, dst += 4) {
                            if (i + 16 < end) __builtin_prefetch(src + size_t(order[i + 16]) * 4);
                            std::memcpy(dst, src + size_t(order[i]) * 4, 4);
                        }
                    } else {
                        for (size_t i = start; i < end; ++i, dst += width) std::memcpy(dst, src + size_t(order[i]) * width, width);
                    }
                    sink.put(scratch.data(), (end - start) * width);
                }
            }
        }
        bool all_valid = true;
        if (col.valid)
            for (size_t i = 0; i < batch.rows && all_valid; ++i) all_valid = col.valid[i] != 0;
        if (!all_valid) {
            sink.pad();
            e.valid_off = sink.pos;
            if (order.empty()) {
                sink.put(col.valid, rows);
            } else {
                scratch.resize(rows);
                for (size_t i = 0; i < rows; ++i) scratch[i] = col.valid[order[i]];
                sink.put(scratch.data(), rows);
            }
        }
        dir.push_back(std::move(e));
    }
    sink.pad();
    uint64_t dir_off = sink.pos;
    for (const DirEntry& e : dir) {
        sink.put_num(uint16_t(e.name.size()));
        sink.put(e.name.data(), e.name.size());
        sink.put_num(uint8_t(e.dtype));
        sink.put_num(e.dim);
        sink.put_num(e.values_off);
        sink.put_num(e.values_len);
        sink.put_num(e.offsets_off);
        sink.put_num(e.valid_off);
    }
    sink.put_num(dir_off);
    sink.put_checksum();
}

void fsync_dir(const fs::path& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

} // namespace

void Segment::write_new(const fs::path& path, const BatchView& batch, const std::vector<uint32_t>& order) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) throw_error(ErrorKind::Internal, "cannot create {}: {}", path.string(), std::strerror(errno));
    try {
        FdSink sink(fd, path);
        write_segment(sink, batch, order);
        sink.flush();
        if (::fsync(fd) != 0) throw_error(ErrorKind::Internal, "fsync of {} failed: {}", path.string(), std::strerror(errno));
        ::close(fd);
    } catch (...) {
        ::close(fd);
        std::error_code ec;
        fs::remove(path, ec);
        throw;
    }
}

void Segment::write(const fs::path& path, const BatchView& batch, const std::vector<uint32_t>& order) {
    fs::path temp = path;
    temp += ".tmp-" + random_hex_id().substr(0, 12);
    write_new(temp, batch, order);
    std::error_code ec;
    fs::rename(temp, path, ec);
    if (ec) {
        std::error_code ignored;
        fs::remove(temp, ignored);
        throw_error(ErrorKind::Internal, "cannot rename {} to {}: {}", temp.string(), path.string(), ec.message());
    }
    fsync_dir(path.parent_path());
}

std::string Segment::to_bytes(const BatchView& batch) {
    StringSink sink;
    write_segment(sink, batch, {});
    return std::move(sink.out);
}

std::shared_ptr<const Segment> Segment::open(const fs::path& path) { return open(path, nullptr, path.string()); }

std::shared_ptr<const Segment> Segment::open(const fs::path& path, std::shared_ptr<const void> hold, std::string source) {
    // O_NONBLOCK: a FIFO put in a segment's place must not block the open (it is refused below).
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw_error(ErrorKind::Corrupt, "feature segment {} cannot be opened: {}", source, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw_error(ErrorKind::Corrupt, "feature segment {} is not a regular file{}", source, kRecoveryHint);
    }
    std::shared_ptr<Segment> seg(new Segment());
    seg->source_ = source;
    seg->hold_ = std::move(hold);
    seg->size_ = size_t(st.st_size);
    if (seg->size_ < kMinSize) {
        ::close(fd);
        throw_error(ErrorKind::Corrupt, "feature segment {} is corrupt: truncated to {} bytes (a segment has at least {}){}",
                    source, seg->size_, kMinSize, kRecoveryHint);
    }
    void* p = ::mmap(nullptr, seg->size_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw_error(ErrorKind::Internal, "mmap of {} failed: {}", source, std::strerror(errno));
    // Read-ahead before the checksum pass (measured: faster than MAP_POPULATE here).
    ::madvise(p, seg->size_, MADV_WILLNEED);
    seg->data_ = static_cast<const uint8_t*>(p);
    seg->mapped_ = true;
    seg->parse();
    return seg;
}

std::shared_ptr<const Segment> Segment::from_bytes(std::string bytes) {
    std::shared_ptr<Segment> seg(new Segment());
    seg->source_ = "blob";
    seg->owned_ = std::move(bytes);
    seg->data_ = reinterpret_cast<const uint8_t*>(seg->owned_.data());
    seg->size_ = seg->owned_.size();
    if (seg->size_ < kMinSize)
        throw_error(ErrorKind::Corrupt, "feature segment blob is corrupt: truncated to {} bytes (a segment has at least {})",
                    seg->size_, kMinSize);
    seg->parse();
    return seg;
}

Segment::~Segment() {
    if (mapped_ && data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

// Every number read from the file is untrusted, even when the checksum matches (a checksum is not a
// signature): offsets and lengths are compared by subtraction, never by a sum that could wrap, and
// every count is bounded by the file size before anything is sized by it.
void Segment::parse() {
    auto corrupt = [&](const std::string& why) {
        throw_error(ErrorKind::Corrupt, "feature segment {} is corrupt: {}{}", source_, why, kRecoveryHint);
    };
    if (std::memcmp(data_, kMagic, 8) != 0) corrupt("bad magic (not a Keel segment)");
    uint32_t ncols;
    uint64_t rows, header_dir_off, dir_off;
    format_version_ = le::load<uint32_t>(data_ + 8);
    ncols = le::load<uint32_t>(data_ + 12);
    rows = le::load<uint64_t>(data_ + 16);
    header_dir_off = le::load<uint64_t>(data_ + 24);
    if (format_version_ > kFormatVersion)
        throw_error(ErrorKind::Corrupt,
                    "feature segment {} has format version {}, this Keel reads versions {} to {}: upgrade Keel to "
                    "read it",
                    source_, format_version_, kOldestFormatVersion, kFormatVersion);
    if (format_version_ < kOldestFormatVersion) corrupt(fmt::format("unknown format version {}", format_version_));
    // Version 1 (no checksum) ends with the directory offset; version 2 adds the checksum after it.
    const size_t trailer = format_version_ >= 2 ? 16 : 8;
    if (size_ < kHeaderSize + trailer) corrupt(fmt::format("truncated to {} bytes", size_));
    const size_t dir_end = size_ - trailer;
    dir_off = le::load<uint64_t>(data_ + dir_end);
    if (format_version_ >= 2) {
        const auto stored = le::load<uint64_t>(data_ + size_ - 8);
        const uint64_t actual = XXH3_64bits_dispatch(data_, size_ - 8);
        if (stored != actual)
            corrupt(fmt::format("checksum mismatch (stored {:016x}, computed {:016x}): the file was altered or "
                                "damaged after it was written",
                                stored, actual));
    }
    if (header_dir_off != 0) corrupt("the header's reserved field is not zero");
    if (dir_off < kHeaderSize || dir_off > dir_end)
        corrupt(fmt::format("directory offset {} lies outside the file ({} bytes)", dir_off, size_));
    // Every row takes at least a byte in each column, and rows without columns carry nothing.
    if (rows > kMaxRows || rows > size_) corrupt(fmt::format("claims {} rows in a file of {} bytes", rows, size_));
    if (ncols == 0 && rows != 0) corrupt(fmt::format("claims {} rows but has no columns", rows));
    // A directory entry takes at least 39 bytes: bound the column count before reserving for it.
    if (ncols > (dir_end - dir_off) / kMinDirEntry)
        corrupt(fmt::format("claims {} columns but its directory has {} bytes", ncols, dir_end - dir_off));
    rows_ = size_t(rows);
    const uint8_t* p = data_ + dir_off;
    const uint8_t* const end = data_ + dir_end;
    auto need = [&](size_t n) {
        if (n > size_t(end - p)) corrupt("directory overruns the file");
    };
    auto take = [&]<typename T>(T& dst) {
        need(sizeof(T));
        dst = le::load<T>(p);
        p += sizeof(T);
    };
    // A block [off, off + len) must lie between the header and the directory, 64-byte aligned.
    auto check_block = [&](const std::string& col, const char* block, uint64_t off, uint64_t len) {
        if (off < kHeaderSize || off > dir_off || len > dir_off - off)
            corrupt(fmt::format("column '{}': {} at offset {} with {} bytes lies outside the data area [{}, {})", col,
                                block, off, len, kHeaderSize, dir_off));
        if (off % kAlign != 0) corrupt(fmt::format("column '{}': {} offset {} is not {}-byte aligned", col, block, off, kAlign));
    };
    columns_.reserve(ncols);
    for (uint32_t c = 0; c < ncols; ++c) {
        uint16_t nlen;
        take(nlen);
        need(nlen);
        std::string name(reinterpret_cast<const char*>(p), nlen);
        p += nlen;
        uint8_t dtype;
        uint32_t dim;
        uint64_t values_off, values_len, offsets_off, valid_off;
        take(dtype);
        take(dim);
        take(values_off);
        take(values_len);
        take(offsets_off);
        take(valid_off);
        if (dtype < 1 || dtype > uint8_t(DType::Vector))
            corrupt(fmt::format("column '{}' has unknown type code {}", name, dtype));
        for (const ColumnView& other : columns_)
            if (other.name == name) corrupt(fmt::format("column '{}' appears twice", name));
        ColumnView col;
        col.dtype = DType(dtype);
        col.dim = dim;
        if (col.dtype == DType::Vector && dim == 0) corrupt(fmt::format("vector column '{}' has length 0", name));
        check_block(name, "values", values_off, values_len);
        // Value blocks are read in place, never converted: host order is the file's (little-endian).
        col.values = data_ + values_off;
        if (col.dtype == DType::String) {
            // rows + 1 int64 offsets: rows <= size_ so the product cannot wrap.
            check_block(name, "string offsets", offsets_off, (rows + 1) * 8);
            col.offsets = reinterpret_cast<const int64_t*>(data_ + offsets_off);
            // Offsets start at 0, never decrease and end at the string bytes' length: every string
            // a reader slices lies inside the values block.
            if (col.offsets[0] != 0) corrupt(fmt::format("string column '{}': first offset is not 0", name));
            for (size_t i = 0; i < rows_; ++i)
                if (col.offsets[i + 1] < col.offsets[i])
                    corrupt(fmt::format("string column '{}': offsets decrease at row {}", name, i));
            if (uint64_t(col.offsets[rows_]) != values_len)
                corrupt(fmt::format("string column '{}': offsets end at {} but the data has {} bytes", name,
                                    col.offsets[rows_], values_len));
        } else {
            uint64_t expected;
            if (__builtin_mul_overflow(uint64_t(dtype_width(col.dtype, dim)), rows, &expected) || values_len != expected)
                corrupt(fmt::format("column '{}' has {} bytes of values, {} rows of {} need {}", name, values_len, rows,
                                    dtype_name(col.dtype), uint64_t(dtype_width(col.dtype, dim)) * rows));
            if (offsets_off != 0) corrupt(fmt::format("column '{}' of type {} has string offsets", name, dtype_name(col.dtype)));
        }
        if (valid_off) {
            check_block(name, "validity", valid_off, rows);
            col.valid = data_ + valid_off;
        }
        col.name = std::move(name);
        columns_.push_back(std::move(col));
    }
    if (p != end) corrupt(fmt::format("{} unexpected bytes after the directory", end - p));
    batch_.rows = rows_;
    batch_.columns = columns_;
}

void Segment::check_columns(const std::vector<ColumnSpec>& required, const std::vector<ColumnSpec>& optional) const {
    auto check = [&](const ColumnSpec& spec, bool must) {
        const ColumnView* col = column(spec.name);
        if (!col) {
            if (must)
                throw_error(ErrorKind::Corrupt, "feature segment {} is corrupt: it has no column '{}'{}", source_,
                            spec.name, kRecoveryHint);
            return;
        }
        if (col->dtype != spec.dtype || (spec.dtype == DType::Vector && col->dim != spec.dim))
            throw_error(ErrorKind::Corrupt, "feature segment {} is corrupt: column '{}' is {}{} but the view says {}{}{}",
                        source_, spec.name, dtype_name(col->dtype),
                        col->dtype == DType::Vector ? fmt::format("[{}]", col->dim) : "", dtype_name(spec.dtype),
                        spec.dtype == DType::Vector ? fmt::format("[{}]", spec.dim) : "", kRecoveryHint);
    };
    for (const auto& s : required) check(s, true);
    for (const auto& s : optional) check(s, false);
}

const ColumnView* Segment::column(std::string_view name) const {
    for (const ColumnView& c : columns_)
        if (c.name == name) return &c;
    return nullptr;
}

} // namespace keel::features
