// tests/cpp/object_store_test.cpp: the ObjectStore contract, for each backend. The local directory
// store always runs; the S3 store (and its read cache) runs when a test S3 server is there: CTest's
// storage.s3_object_store runs this binary through tests/servers/with_servers.py --s3, which exports
// KEEL_TEST_S3_BUCKET and the AWS_* variables.
#include "keel/common/error.hpp"
#include "keel/storage/artifact_store.hpp"
#include "keel/storage/object_store.hpp"
#include "keel/storage/s3_client.hpp"
#include "keel/storage/workspace.hpp"

#include "support/expect_error.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using keel::ErrorKind;
using keel::testing::error_message;
using keel::testing::TempDir;
using namespace keel::storage;

namespace {

std::string env(const char* name) {
    const char* value = std::getenv(name);
    return value ? value : "";
}

std::string read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

int64_t folder_bytes(const fs::path& dir) {
    int64_t total = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_regular_file()) total += int64_t(it->file_size());
    return total;
}

// A fresh store of the backend named by the test parameter: a temporary directory, or a fresh
// prefix of the test bucket with its cache in a temporary directory.
class ObjectStoreTest : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        if (remote()) {
            const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
            std::string name = info->name();
            for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
            url_ = "s3://" + env("KEEL_TEST_S3_BUCKET") + "/objects-" + name + "-" + std::to_string(getpid());
        }
        store_ = make(dir_.path / "cache");
    }
    bool remote() const { return GetParam() == "s3"; }
    std::unique_ptr<ObjectStore> make(const fs::path& cache, int64_t max_bytes = int64_t(1) << 30) const {
        if (!remote()) return local_object_store(dir_.path / "root");
        return s3_object_store(S3Config::from_env(), S3Location::parse(url_), {cache, max_bytes});
    }
    //! Replaces an object behind the store's back (another writer, or an attacker).
    void overwrite(const std::string& key, const std::string& bytes) {
        if (remote())
            S3Client(S3Config::from_env(), S3Location::parse(url_)).put(key, bytes);
        else
            std::ofstream(dir_.path / "root" / key, std::ios::binary | std::ios::trunc) << bytes;
    }

    TempDir dir_;
    std::string url_;
    std::unique_ptr<ObjectStore> store_;
};

TEST_P(ObjectStoreTest, PutFetchListAndRemove) {
    store_->put_bytes("features/v/v1/a.kseg", "alpha");
    store_->put_bytes("features/v/v1/b.kseg", "bravo");
    store_->put_bytes("artifacts/sha256/00/c", "charlie");
    EXPECT_TRUE(store_->exists("features/v/v1/a.kseg"));
    EXPECT_FALSE(store_->exists("features/v/v1/zz.kseg"));
    EXPECT_EQ(read(store_->fetch("features/v/v1/b.kseg").path), "bravo");
    auto listed = store_->list("features/v/");
    ASSERT_EQ(listed.size(), 2u);
    EXPECT_EQ(listed[0].key, "features/v/v1/a.kseg");
    EXPECT_EQ(listed[0].size, 5);
    EXPECT_EQ(listed[1].key, "features/v/v1/b.kseg");
    store_->remove("features/v/v1/a.kseg");
    store_->remove("features/v/v1/a.kseg");  // a missing key is not an error
    EXPECT_FALSE(store_->exists("features/v/v1/a.kseg"));
    const std::string message = error_message(ErrorKind::NotFound, [&] { store_->fetch("features/v/v1/a.kseg"); });
    EXPECT_NE(message.find("features/v/v1/a.kseg"), std::string::npos) << message;
    EXPECT_EQ(store_->list("features/").size(), 1u);
}

TEST_P(ObjectStoreTest, ACommitConsumesTheStagedFileAndReplacesWhole) {
    fs::path staged = store_->stage("features/v/v1");
    std::ofstream(staged, std::ios::binary) << std::string(100000, 'x');
    store_->commit(staged, "features/v/v1/s.kseg");
    EXPECT_FALSE(fs::exists(staged));
    EXPECT_EQ(read(store_->fetch("features/v/v1/s.kseg").path), std::string(100000, 'x'));
    // Staged files never show in a listing.
    fs::path pending = store_->stage("features/v/v1");
    std::ofstream(pending) << "half";
    EXPECT_EQ(store_->list("features/").size(), 1u);
    fs::remove(pending);
}

TEST_P(ObjectStoreTest, ContentAddressedPutsKeepAGoodObjectAndRepairAWrongOne) {
    const std::string key = ArtifactStore::key_of(sha256_hex("payload"));
    store_->put_bytes(key, "payload", sha256_hex("payload"));
    store_->put_bytes(key, "payload", sha256_hex("payload"));
    EXPECT_EQ(read(store_->fetch(key).path), "payload");
    overwrite(key, "damaged");
    store_->put_bytes(key, "payload", sha256_hex("payload"));
    auto fresh = make(dir_.path / "fresh-cache");
    EXPECT_EQ(read(fresh->fetch(key, sha256_hex("payload")).path), "payload");
}

TEST_P(ObjectStoreTest, KeysThatClimbOrAreEmptyAreRefused) {
    for (const char* bad : {"", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/"})
        error_message(ErrorKind::InvalidArgument, [&] { store_->put_bytes(bad, "x"); });
    error_message(ErrorKind::InvalidArgument, [&] { store_->fetch("../keel.db"); });
}

TEST_P(ObjectStoreTest, ADownloadIsVerifiedAgainstTheDigestAndNamesTheKey) {
    if (!remote()) GTEST_SKIP() << "a local store hands out its file; readers verify as they read";
    const std::string key = ArtifactStore::key_of(sha256_hex("model"));
    store_->put_bytes(key, "model", sha256_hex("model"));
    overwrite(key, "tampered");
    auto other = make(dir_.path / "other-cache");
    const std::string message = error_message(ErrorKind::Corrupt, [&] { other->fetch(key, sha256_hex("model")); });
    EXPECT_NE(message.find(url_ + "/" + key), std::string::npos) << message;
    EXPECT_EQ(folder_bytes(dir_.path / "other-cache" / "objects"), 0);  // nothing bad kept
    // The writer's cache kept its own upload: served without a download.
    EXPECT_EQ(read(store_->fetch(key, sha256_hex("model")).path), "model");
}

TEST_P(ObjectStoreTest, ConcurrentFetchesOfOneKeyShareOneWholeCopy) {
    if (!remote()) GTEST_SKIP() << "no cache";
    const std::string bytes(3'000'000, 'k');
    const std::string key = ArtifactStore::key_of(sha256_hex(bytes));
    store_->put_bytes(key, bytes, sha256_hex(bytes));
    // Two handles (as two processes would) on one fresh cache folder, four threads each.
    auto a = make(dir_.path / "shared"), b = make(dir_.path / "shared");
    std::vector<std::thread> threads;
    std::vector<LocalObject> got(8);
    for (int i = 0; i < 8; ++i)
        threads.emplace_back([&, i] { got[size_t(i)] = (i % 2 ? a : b)->fetch(key, sha256_hex(bytes)); });
    for (auto& t : threads) t.join();
    for (const auto& g : got) {
        EXPECT_EQ(g.path, got[0].path);
        EXPECT_EQ(read(g.path), bytes);
    }
    EXPECT_TRUE(fs::is_empty(dir_.path / "shared" / "tmp"));
    EXPECT_EQ(folder_bytes(dir_.path / "shared" / "objects"), int64_t(bytes.size()));
}

TEST_P(ObjectStoreTest, TheCacheEvictsTheLeastRecentlyUsedButNeverAHeldCopy) {
    if (!remote()) GTEST_SKIP() << "no cache";
    for (char c : {'a', 'b', 'c', 'd'}) store_->put_bytes(std::string("k/") + c, std::string(600, c));
    const fs::path cache = dir_.path / "small";
    auto small = make(cache, 1500);
    LocalObject held = small->fetch("k/a");
    small->fetch("k/b");
    small->fetch("k/c");  // 1800 bytes: b goes (a is held)
    EXPECT_TRUE(fs::exists(held.path));
    EXPECT_FALSE(fs::exists(cache / "objects" / "k" / "b"));
    EXPECT_TRUE(fs::exists(cache / "objects" / "k" / "c"));
    held = {};
    small->fetch("k/d");  // a, released and least recently used, goes now
    EXPECT_FALSE(fs::exists(cache / "objects" / "k" / "a"));
    EXPECT_LE(folder_bytes(cache / "objects"), 1500);
    EXPECT_EQ(read(small->fetch("k/a").path), std::string(600, 'a'));  // fetched again
}

std::vector<std::string> backends() {
    if (env("KEEL_TEST_S3_BUCKET").empty()) return {"local"};
    return {"local", "s3"};
}

INSTANTIATE_TEST_SUITE_P(Backends, ObjectStoreTest, ::testing::ValuesIn(backends()),
                         [](const auto& info) { return info.param == "s3" ? std::string("S3") : std::string("Local"); });

// --- the workspace's recorded location --------------------------------------------------------------

TEST(WorkspaceLocation, ANewWorkspaceRecordsItsDirectoryAndRefusesS3Later) {
    TempDir dir;
    auto ws = Workspace::open(dir.path / "w");
    EXPECT_TRUE(ws->objects().is_local());
    const std::string digest = ws->artifacts().put_bytes("x");
    EXPECT_TRUE(fs::exists(dir.path / "w" / "artifacts" / "sha256" / digest.substr(0, 2) / digest.substr(2)));
    WorkspaceLocation s3{dir.path / "w", "s3://some-bucket/team"};
    const std::string message = error_message(ErrorKind::InvalidArgument, [&] { Workspace::open(s3); });
    EXPECT_NE(message.find("its own directory"), std::string::npos) << message;
    EXPECT_NE(message.find("s3://some-bucket/team/"), std::string::npos) << message;
    error_message(ErrorKind::InvalidArgument, [&] { Workspace::open(WorkspaceLocation{dir.path / "v", "/elsewhere"}); });
}

TEST(WorkspaceLocation, TheCacheSizeTakesSuffixes) {
    ::setenv("KEEL_CACHE_MAX_BYTES", "512M", 1);
    EXPECT_EQ(WorkspaceLocation::from_env("w").cache_max_bytes, int64_t(512) << 20);
    ::setenv("KEEL_CACHE_MAX_BYTES", "lots", 1);
    error_message(ErrorKind::InvalidArgument, [] { WorkspaceLocation::from_env("w"); });
    ::unsetenv("KEEL_CACHE_MAX_BYTES");
}

TEST(WorkspaceLocation, AnS3WorkspaceRecordsItsBucket) {
    if (env("KEEL_TEST_S3_BUCKET").empty()) GTEST_SKIP() << "needs the test S3 server (storage.s3_object_store)";
    TempDir dir;
    const std::string url = "s3://" + env("KEEL_TEST_S3_BUCKET") + "/ws-" + std::to_string(getpid());
    auto ws = Workspace::open(WorkspaceLocation{dir.path / "w", url});
    const std::string digest = ws->artifacts().put_bytes("shared");
    auto again = Workspace::open(dir.path / "w");
    EXPECT_EQ(again->location().artifacts, url + "/");
    EXPECT_EQ(again->artifacts().get_bytes(digest), "shared");
    EXPECT_FALSE(fs::exists(dir.path / "w" / "artifacts"));
    const std::string message =
        error_message(ErrorKind::InvalidArgument, [&] { Workspace::open(WorkspaceLocation{dir.path / "w", url + "x"}); });
    EXPECT_NE(message.find(url + "/"), std::string::npos) << message;
    EXPECT_NE(message.find(url + "x/"), std::string::npos) << message;
}

} // namespace
