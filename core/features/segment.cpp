// core/features/segment.cpp
#include "keel/features/segment.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace fs = std::filesystem;

namespace keel::features {

namespace {

constexpr char kMagic[8] = {'K', 'E', 'E', 'L', 'S', 'E', 'G', '1'};
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kAlign = 64;
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8 + 8;

// Accumulates the file in memory-sized pieces through a plain fd (buffered by us).
class Sink {
public:
    virtual ~Sink() = default;
    virtual void write(const void* data, size_t size) = 0;
    size_t pos = 0;
    void put(const void* data, size_t size) {
        if (size) write(data, size);
        pos += size;
    }
    template <typename T>
    void put_pod(const T& value) { put(&value, sizeof(T)); }
    void pad() {
        static const char zeros[kAlign] = {};
        size_t rem = pos % kAlign;
        if (rem) put(zeros, kAlign - rem);
    }
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
    sink.put_pod(kFormatVersion);
    sink.put_pod(uint32_t(batch.columns.size()));
    sink.put_pod(uint64_t(rows));
    // The directory offset is only known at the end: the header keeps a placeholder that the
    // trailer repeats; readers use the trailer (last 8 bytes).
    sink.put_pod(uint64_t(0));
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
        sink.put_pod(uint16_t(e.name.size()));
        sink.put(e.name.data(), e.name.size());
        sink.put_pod(uint8_t(e.dtype));
        sink.put_pod(e.dim);
        sink.put_pod(e.values_off);
        sink.put_pod(e.values_len);
        sink.put_pod(e.offsets_off);
        sink.put_pod(e.valid_off);
    }
    sink.put_pod(dir_off);
}

void fsync_dir(const fs::path& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

} // namespace

void Segment::write(const fs::path& path, const BatchView& batch, const std::vector<uint32_t>& order) {
    fs::path temp = path;
    temp += ".tmp-" + random_hex_id().substr(0, 12);
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) throw_error(ErrorKind::Internal, "cannot create {}: {}", temp.string(), std::strerror(errno));
    try {
        FdSink sink(fd, temp);
        write_segment(sink, batch, order);
        sink.flush();
        if (::fsync(fd) != 0) throw_error(ErrorKind::Internal, "fsync of {} failed: {}", temp.string(), std::strerror(errno));
        ::close(fd);
        fd = -1;
        fs::rename(temp, path);
        fsync_dir(path.parent_path());
    } catch (...) {
        if (fd >= 0) ::close(fd);
        std::error_code ec;
        fs::remove(temp, ec);
        throw;
    }
}

std::string Segment::to_bytes(const BatchView& batch) {
    StringSink sink;
    write_segment(sink, batch, {});
    return std::move(sink.out);
}

std::shared_ptr<const Segment> Segment::open(const fs::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_error(ErrorKind::Corrupt, "feature segment {} cannot be opened: {}", path.string(), std::strerror(errno));
    struct stat st {};
    ::fstat(fd, &st);
    std::shared_ptr<Segment> seg(new Segment());
    seg->size_ = size_t(st.st_size);
    if (seg->size_ < kHeaderSize + 8) {
        ::close(fd);
        throw_error(ErrorKind::Corrupt, "feature segment {} is truncated ({} bytes)", path.string(), seg->size_);
    }
    void* p = ::mmap(nullptr, seg->size_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw_error(ErrorKind::Internal, "mmap of {} failed: {}", path.string(), std::strerror(errno));
    ::madvise(p, seg->size_, MADV_WILLNEED);
    seg->data_ = static_cast<const uint8_t*>(p);
    seg->mapped_ = true;
    seg->parse(path.string());
    return seg;
}

std::shared_ptr<const Segment> Segment::from_bytes(std::string bytes) {
    std::shared_ptr<Segment> seg(new Segment());
    seg->owned_ = std::move(bytes);
    seg->data_ = reinterpret_cast<const uint8_t*>(seg->owned_.data());
    seg->size_ = seg->owned_.size();
    if (seg->size_ < kHeaderSize + 8) throw_error(ErrorKind::Corrupt, "feature segment blob is truncated ({} bytes)", seg->size_);
    seg->parse("blob");
    return seg;
}

Segment::~Segment() {
    if (mapped_ && data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void Segment::parse(const std::string& what) {
    auto corrupt = [&](const char* why) { throw_error(ErrorKind::Corrupt, "feature segment {} is corrupt: {}", what, why); };
    if (std::memcmp(data_, kMagic, 8) != 0) corrupt("bad magic");
    uint32_t version, ncols;
    uint64_t rows, dir_off;
    std::memcpy(&version, data_ + 8, 4);
    std::memcpy(&ncols, data_ + 12, 4);
    std::memcpy(&rows, data_ + 16, 8);
    std::memcpy(&dir_off, data_ + size_ - 8, 8);
    if (version != kFormatVersion) corrupt("unknown format version (written by a newer Keel?)");
    if (dir_off >= size_ - 8) corrupt("bad directory offset");
    rows_ = rows;
    const uint8_t* p = data_ + dir_off;
    const uint8_t* end = data_ + size_ - 8;
    auto take = [&](void* dst, size_t n) {
        if (p + n > end) corrupt("directory overruns the file");
        std::memcpy(dst, p, n);
        p += n;
    };
    for (uint32_t c = 0; c < ncols; ++c) {
        uint16_t nlen;
        take(&nlen, 2);
        std::string name(nlen, '\0');
        take(name.data(), nlen);
        uint8_t dtype;
        uint32_t dim;
        uint64_t values_off, values_len, offsets_off, valid_off;
        take(&dtype, 1);
        take(&dim, 4);
        take(&values_off, 8);
        take(&values_len, 8);
        take(&offsets_off, 8);
        take(&valid_off, 8);
        if (dtype < 1 || dtype > uint8_t(DType::Vector)) corrupt("unknown column type");
        ColumnView col;
        col.name = std::move(name);
        col.dtype = DType(dtype);
        col.dim = dim;
        if (values_off + values_len > dir_off) corrupt("column data out of bounds");
        if (col.dtype != DType::String && values_len != dtype_width(col.dtype, dim) * rows) corrupt("column size mismatch");
        col.values = data_ + values_off;
        if (col.dtype == DType::String) {
            if (offsets_off == 0 || offsets_off + (rows + 1) * 8 > dir_off) corrupt("string offsets out of bounds");
            col.offsets = reinterpret_cast<const int64_t*>(data_ + offsets_off);
            if (col.offsets[rows] != int64_t(values_len)) corrupt("string offsets do not match the data");
        }
        if (valid_off) {
            if (valid_off + rows > dir_off) corrupt("validity out of bounds");
            col.valid = data_ + valid_off;
        }
        columns_.push_back(std::move(col));
    }
    batch_.rows = rows_;
    batch_.columns = columns_;
}

const ColumnView* Segment::column(std::string_view name) const {
    for (const ColumnView& c : columns_)
        if (c.name == name) return &c;
    return nullptr;
}

} // namespace keel::features
