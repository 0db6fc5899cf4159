// core/storage/artifact_store.cpp
#include "keel/storage/artifact_store.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/object_store.hpp"

#include "object_files.hpp"

#include <openssl/evp.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <array>
#include <fstream>
#include <memory>

namespace fs = std::filesystem;

namespace keel::storage {

namespace {

const ModuleSchema kSchema{"artifacts",
                           {R"(CREATE TABLE artifacts (
                                 digest TEXT PRIMARY KEY,
                                 size INTEGER NOT NULL,
                                 created_at INTEGER NOT NULL))"}};

class Sha256 {
public:
    Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
    void update(const void* data, size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }
    std::string hex() {
        std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
        unsigned int len = 0;
        EVP_DigestFinal_ex(ctx_.get(), md.data(), &len);
        static constexpr char kHex[] = "0123456789abcdef";
        std::string out(len * 2, '0');
        for (unsigned i = 0; i < len; ++i) {
            out[2 * i] = kHex[md[i] >> 4];
            out[2 * i + 1] = kHex[md[i] & 0xF];
        }
        return out;
    }

private:
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

void check_digest(std::string_view digest) {
    bool ok = digest.size() == 64;
    for (char c : digest) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!ok)
        throw_error(ErrorKind::InvalidArgument,
                    "'{}' is not an artifact digest: expected 64 lowercase hex characters (sha256)", digest);
}

struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
};

// Streams a file through sha256 and, optionally, a copy sink; returns {digest, size}.
std::pair<std::string, int64_t> hash_stream(std::istream& in, std::ostream* copy) {
    Sha256 sha;
    std::vector<char> buf(1 << 20);
    int64_t total = 0;
    while (in) {
        in.read(buf.data(), std::streamsize(buf.size()));
        auto got = in.gcount();
        if (got <= 0) break;
        sha.update(buf.data(), size_t(got));
        if (copy) copy->write(buf.data(), got);
        total += got;
    }
    return {sha.hex(), total};
}

} // namespace

std::string sha256_hex(std::string_view data) {
    Sha256 sha;
    sha.update(data.data(), data.size());
    return sha.hex();
}

std::string sha256_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw_error(ErrorKind::NotFound, "cannot read file '{}'", path.string());
    return hash_stream(in, nullptr).first;
}

const ModuleSchema& ArtifactStore::schema() { return kSchema; }

const std::vector<ObjectRefs>& ArtifactStore::object_refs() {
    // Every artifact committed has its row (written after the object): what a crash leaves is an
    // object without one.
    static const std::vector<ObjectRefs> refs{{"artifacts", ObjectRefs::Kind::ArtifactDigest, "SELECT digest FROM artifacts"}};
    return refs;
}

ArtifactStore::ArtifactStore(ObjectStore& objects, Db& db) : objects_(objects), db_(db) {
    db_.ensure_schema(kSchema);
}

std::string ArtifactStore::key_of(std::string_view digest) {
    check_digest(digest);
    return fmt::format("artifacts/sha256/{}/{}", digest.substr(0, 2), digest.substr(2));
}

fs::path ArtifactStore::path_of(std::string_view digest) const { return fetch(digest).path; }

LocalObject ArtifactStore::fetch(std::string_view digest) const {
    const std::string key = key_of(digest);
    try {
        return objects_.fetch(key, digest);
    } catch (const Error& e) {
        if (e.kind() != ErrorKind::NotFound) throw;
        throw_error(ErrorKind::NotFound, "artifact {} is not in this workspace ({} is missing)", digest,
                    objects_.describe(key));
    }
}

// The object is stored (or was already) before its row is written: a crash in between leaves at
// most an unreferenced object, never a row naming a missing one.
std::string ArtifactStore::commit(const fs::path& staged, const std::string& digest, int64_t size) {
    objects_.commit(staged, key_of(digest), digest);
    auto guard = db_.lock();
    auto st = db_.prepare("INSERT INTO artifacts(digest, size, created_at) VALUES(?, ?, ?) ON CONFLICT(digest) DO NOTHING");
    st.bind_all(digest, size, now_ms()).run();
    return digest;
}

std::string ArtifactStore::put_bytes(std::string_view data) {
    std::string digest = sha256_hex(data);
    fs::path staged = objects_.stage("artifacts");
    try {
        detail::write_file(staged, data);
    } catch (...) {
        std::error_code ec;
        fs::remove(staged, ec);
        throw;
    }
    return commit(staged, digest, int64_t(data.size()));
}

std::string ArtifactStore::put_file(const fs::path& source) {
    // O_NONBLOCK so that a named pipe cannot block the open; fstat on the open descriptor so that a
    // file swapped for a pipe or device after any earlier check is still refused.
    int fd = ::open(source.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        throw_error(errno == EACCES ? ErrorKind::PermissionDenied : ErrorKind::NotFound,
                    "cannot read artifact file '{}': {}; check the path exists and is a readable file", source.string(),
                    std::strerror(errno));
    FdCloser closer{fd};
    struct stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode))
        throw_error(S_ISDIR(info.st_mode) ? ErrorKind::NotFound : ErrorKind::InvalidArgument,
                    "cannot read artifact file '{}': it is not a regular file (a directory, pipe, socket or device); "
                    "Keel stores regular files only",
                    source.string());
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    fs::path temp = objects_.stage("artifacts");
    Sha256 sha;
    int64_t total = 0;
    {
        std::ofstream out(temp, std::ios::binary);
        std::vector<char> buf(1 << 20);
        while (true) {
            ssize_t got = ::read(fd, buf.data(), buf.size());
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) {
                std::error_code ec;
                fs::remove(temp, ec);
                throw_error(ErrorKind::InvalidArgument, "cannot read artifact file '{}': {}", source.string(),
                            std::strerror(errno));
            }
            if (got == 0) break;
            sha.update(buf.data(), size_t(got));
            out.write(buf.data(), got);
            total += got;
        }
        if (!out.flush()) {
            std::error_code ec;
            fs::remove(temp, ec);
            throw_error(ErrorKind::Internal, "cannot write artifact to '{}'", temp.string());
        }
    }
    return commit(temp, sha.hex(), total);
}

bool ArtifactStore::contains(std::string_view digest) const { return objects_.exists(key_of(digest)); }

int64_t ArtifactStore::size(std::string_view digest) const {
    check_digest(digest);
    auto guard = db_.lock();
    auto st = db_.prepare("SELECT size FROM artifacts WHERE digest = ?");
    st.bind(1, digest);
    if (!st.step()) throw_error(ErrorKind::NotFound, "artifact {} is not in this workspace", digest);
    return st.int64(0);
}

std::string ArtifactStore::get_bytes(std::string_view digest) const {
    LocalObject object = fetch(digest);  // held while read: a cache does not evict it meanwhile
    std::ifstream in(object.path, std::ios::binary);
    if (!in) throw_error(ErrorKind::NotFound, "artifact {} is not in this workspace ({} is missing)", digest, object.path.string());
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (sha256_hex(data) != digest)
        throw_error(ErrorKind::Corrupt,
                    "artifact {} is corrupt: its content ({} bytes at {}) no longer matches its sha256; it was "
                    "truncated or modified on disk. Restore it from a backup or log it again",
                    digest, data.size(), object.path.string());
    return data;
}

void ArtifactStore::verify(std::string_view digest) const {
    LocalObject object = fetch(digest);
    const fs::path& path = object.path;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw_error(ErrorKind::NotFound, "artifact {} is not in this workspace ({} is missing)", digest, path.string());
    auto [actual, size] = hash_stream(in, nullptr);
    if (actual != digest)
        throw_error(ErrorKind::Corrupt,
                    "artifact {} is corrupt: its content ({} bytes) hashes to {}; it was truncated or "
                    "modified on disk. Restore it from a backup or log it again",
                    digest, size, actual);
}

void ArtifactStore::copy_to(std::string_view digest, const fs::path& dest) const {
    LocalObject object = fetch(digest);
    std::ifstream in(object.path, std::ios::binary);
    if (!in) throw_error(ErrorKind::NotFound, "artifact {} is not in this workspace", digest);
    std::error_code ec;
    if (dest.has_parent_path()) fs::create_directories(dest.parent_path(), ec);
    fs::path temp = dest;
    temp += ".keel-partial";
    // A fresh file, never through a link someone left at the temporary name.
    fs::remove(temp, ec);
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        throw_error(errno == EACCES ? ErrorKind::PermissionDenied : ErrorKind::InvalidArgument,
                    "cannot write to '{}': {}", dest.string(), std::strerror(errno));
    Sha256 sha;
    bool written = true;
    int write_errno = 0;
    {
        FdCloser closer{fd};
        std::vector<char> buf(1 << 20);
        while (written && in) {
            in.read(buf.data(), std::streamsize(buf.size()));
            auto got = in.gcount();
            if (got <= 0) break;
            sha.update(buf.data(), size_t(got));
            for (const char* p = buf.data(); written && p < buf.data() + got;) {
                ssize_t n = ::write(fd, p, size_t(buf.data() + got - p));
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) {
                    written = false;
                    write_errno = n < 0 ? errno : ENOSPC;
                }
                else p += n;
            }
        }
    }
    std::string actual = sha.hex();
    if (!written || actual != digest) {
        fs::remove(temp, ec);
        if (!written) throw_error(ErrorKind::Internal, "cannot write to '{}': {}", dest.string(), std::strerror(write_errno));
        throw_error(ErrorKind::Corrupt,
                    "artifact {} is corrupt: its content hashes to {}; it was truncated or modified on "
                    "disk. Restore it from a backup or log it again",
                    digest, actual);
    }
    fs::rename(temp, dest, ec);
    if (ec) {
        std::error_code ignored;
        fs::remove(temp, ignored);
        throw_error(ErrorKind::InvalidArgument, "cannot write to '{}': {}", dest.string(), ec.message());
    }
}

} // namespace keel::storage
