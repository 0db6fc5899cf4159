// core/storage/object_files.cpp
#include "object_files.hpp"

#include "keel/common/error.hpp"

#include <openssl/evp.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

namespace fs = std::filesystem;

namespace keel::storage::detail {

void write_file(const fs::path& path, std::string_view bytes) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) throw_error(ErrorKind::Internal, "cannot create {}: {}", path.string(), std::strerror(errno));
    const char* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = n < 0 ? errno : ENOSPC;
            ::close(fd);
            throw_error(ErrorKind::Internal, "cannot write {}: {}", path.string(), std::strerror(err));
        }
        p += n;
        left -= size_t(n);
    }
    if (::fsync(fd) != 0) {
        int err = errno;
        ::close(fd);
        throw_error(ErrorKind::Internal, "fsync of {} failed: {}", path.string(), std::strerror(err));
    }
    ::close(fd);
}

std::string read_file(const fs::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_error(ErrorKind::NotFound, "cannot read {}: {}", path.string(), std::strerror(errno));
    std::string out;
    char buf[1 << 16];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            throw_error(ErrorKind::Internal, "cannot read {}: {}", path.string(), std::strerror(err));
        }
        if (n == 0) break;
        out.append(buf, size_t(n));
    }
    ::close(fd);
    return out;
}

void fsync_path(const fs::path& path, bool directory) {
    int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

namespace {

std::string to_hex(std::string_view bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) (out += kHex[c >> 4]) += kHex[c & 15];
    return out;
}

} // namespace

struct Hasher::Ctx {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Ctx() { EVP_MD_CTX_free(ctx); }
};

Hasher::Hasher(const void* md) : ctx_(std::make_unique<Ctx>()) {
    EVP_DigestInit_ex(ctx_->ctx, static_cast<const EVP_MD*>(md), nullptr);
}
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;
Hasher::~Hasher() = default;
Hasher Hasher::sha256() { return Hasher(EVP_sha256()); }
Hasher Hasher::md5() { return Hasher(EVP_md5()); }
void Hasher::update(std::string_view bytes) { EVP_DigestUpdate(ctx_->ctx, bytes.data(), bytes.size()); }
std::string Hasher::digest() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_->ctx, md, &len);
    return std::string(reinterpret_cast<const char*>(md), len);
}
std::string Hasher::hex() { return to_hex(digest()); }

namespace {

// Feeds the next `bytes` bytes of `in` to `hash`, a megabyte at a time.
void hash_next(FileSource& in, int64_t bytes, Hasher& hash, const fs::path& path) {
    std::string buf;
    while (bytes > 0) {
        in.read(buf, size_t(std::min<int64_t>(bytes, 1 << 20)));
        if (buf.empty()) throw_error(ErrorKind::Internal, "{} shrank while it was being read", path.string());
        hash.update(buf);
        bytes -= int64_t(buf.size());
    }
}

} // namespace

std::string file_md5_hex(const fs::path& path) {
    FileSource in(path);
    Hasher md5 = Hasher::md5();
    hash_next(in, in.size(), md5, path);
    return md5.hex();
}

std::string multipart_etag(const fs::path& path, int64_t part_size) {
    FileSource in(path);
    Hasher all = Hasher::md5();
    int64_t parts = 0;
    for (int64_t offset = 0; offset < in.size(); offset += part_size, ++parts) {
        Hasher part = Hasher::md5();
        hash_next(in, std::min(part_size, in.size() - offset), part, path);
        all.update(part.digest());
    }
    return all.hex() + "-" + std::to_string(parts);
}

FileSink::FileSink(const fs::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd_ < 0) throw_error(ErrorKind::Internal, "cannot create {}: {}", path.string(), std::strerror(errno));
}

FileSink::~FileSink() {
    if (fd_ >= 0) ::close(fd_);
}

void FileSink::write(std::string_view bytes) {
    const char* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
        ssize_t n = ::write(fd_, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            throw_error(ErrorKind::Internal, "cannot write {}: {}", path_.string(), std::strerror(n < 0 ? errno : ENOSPC));
        p += n;
        left -= size_t(n);
    }
}

void FileSink::close() {
    const int fd = fd_;
    fd_ = -1;
    if (::fsync(fd) != 0) {
        int err = errno;
        ::close(fd);
        throw_error(ErrorKind::Internal, "fsync of {} failed: {}", path_.string(), std::strerror(err));
    }
    ::close(fd);
}

FileSource::FileSource(const fs::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw_error(ErrorKind::NotFound, "cannot read {}: {}", path.string(), std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
        int err = errno;
        ::close(fd_);
        throw_error(ErrorKind::Internal, "cannot stat {}: {}", path.string(), std::strerror(err));
    }
    size_ = int64_t(st.st_size);
}

FileSource::~FileSource() { ::close(fd_); }

void FileSource::read(std::string& out, size_t size) {
    out.resize(size);
    size_t got = 0;
    while (got < size) {
        ssize_t n = ::read(fd_, out.data() + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_error(ErrorKind::Internal, "cannot read {}: {}", path_.string(), std::strerror(errno));
        if (n == 0) break;
        got += size_t(n);
    }
    out.resize(got);
}

} // namespace keel::storage::detail
