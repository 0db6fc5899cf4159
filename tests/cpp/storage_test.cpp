// tests/cpp/storage_test.cpp
#include "keel/common/error.hpp"
#include "keel/storage/workspace.hpp"

#include "support/expect_error.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fs = std::filesystem;
using keel::testing::corrupt_message;
using keel::testing::TempDir;
using keel::testing::thrown_error;
using keel::ErrorKind;
using keel::storage::Workspace;

TEST(Workspace, CreatesLayoutAndReopens) {
    TempDir dir;
    auto ws = Workspace::open(dir.path / "ws");
    EXPECT_TRUE(fs::exists(dir.path / "ws" / "keel.db"));
    EXPECT_TRUE(fs::is_directory(dir.path / "ws" / "artifacts"));
    std::string digest = ws->artifacts().put_bytes("hello");
    ws.reset();
    auto again = Workspace::open(dir.path / "ws");
    EXPECT_EQ(again->artifacts().get_bytes(digest), "hello");
}

TEST(Workspace, RefusesAFileAndAForeignDatabase) {
    TempDir dir;
    std::ofstream(dir.path / "file") << "x";
    EXPECT_EQ(thrown_error([&] { Workspace::open(dir.path / "file"); }).kind(), ErrorKind::InvalidArgument);

    fs::create_directories(dir.path / "foreign");
    std::ofstream(dir.path / "foreign" / "keel.db") << "this is not sqlite at all, just text padding......";
    EXPECT_EQ(thrown_error([&] { Workspace::open(dir.path / "foreign"); }).kind(), ErrorKind::Corrupt);
}

TEST(Schema, RefusesAWorkspaceFromANewerKeel) {
    TempDir dir;
    auto ws = Workspace::open(dir.path);
    keel::storage::ModuleSchema v2{"demo", {"CREATE TABLE t(a)", "ALTER TABLE t ADD COLUMN b"}};
    ws->db().ensure_schema(v2);
    ws.reset();
    auto old = Workspace::open(dir.path);
    keel::storage::ModuleSchema v1{"demo", {"CREATE TABLE t(a)"}};
    auto msg = corrupt_message([&] { old->db().ensure_schema(v1); });
    EXPECT_NE(msg.find("upgrade Keel"), std::string::npos) << msg;
}

TEST(Artifacts, SameContentStoredOnce) {
    TempDir dir;
    auto ws = Workspace::open(dir.path);
    auto a = ws->artifacts().put_bytes("model bytes");
    auto b = ws->artifacts().put_bytes("model bytes");
    EXPECT_EQ(a, b);
    EXPECT_EQ(a, keel::storage::sha256_hex("model bytes"));
    EXPECT_EQ(keel::storage::sha256_hex("abc"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(ws->artifacts().size(a), 11);
}

TEST(Artifacts, TamperedOrTruncatedBlobIsCorruptNeverReturned) {
    TempDir dir;
    auto ws = Workspace::open(dir.path);
    auto& store = ws->artifacts();
    auto digest = store.put_bytes(std::string(4096, 'k'));
    {
        std::ofstream out(store.path_of(digest), std::ios::binary | std::ios::in | std::ios::out);
        out.seekp(100);
        out.put('X');
    }
    EXPECT_EQ(thrown_error([&] { store.get_bytes(digest); }).kind(), ErrorKind::Corrupt);
    EXPECT_EQ(thrown_error([&] { store.verify(digest); }).kind(), ErrorKind::Corrupt);
    EXPECT_EQ(thrown_error([&] { store.copy_to(digest, dir.path / "out.bin"); }).kind(), ErrorKind::Corrupt);
    EXPECT_FALSE(fs::exists(dir.path / "out.bin"));

    auto other = store.put_bytes(std::string(4096, 'z'));
    fs::resize_file(store.path_of(other), 10);
    EXPECT_EQ(thrown_error([&] { store.get_bytes(other); }).kind(), ErrorKind::Corrupt);
    // Storing the same content again repairs the damaged blob.
    store.put_bytes(std::string(4096, 'z'));
    EXPECT_EQ(store.get_bytes(other), std::string(4096, 'z'));
}

TEST(Artifacts, BadDigestAndMissingBlob) {
    TempDir dir;
    auto ws = Workspace::open(dir.path);
    EXPECT_EQ(thrown_error([&] { ws->artifacts().get_bytes("../etc/passwd"); }).kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(thrown_error([&] { ws->artifacts().get_bytes(std::string(64, 'a')); }).kind(), ErrorKind::NotFound);
    EXPECT_EQ(thrown_error([&] { ws->artifacts().put_file(dir.path / "nope.txt"); }).kind(), ErrorKind::NotFound);
}

TEST(Transaction, WorkAfterCommitWaitsForTheOutermostCommitAndIsDroppedOnRollback) {
    TempDir dir;
    auto ws = Workspace::open(dir.path);
    auto& db = ws->db();
    auto guard = db.lock();
    int ran = 0;
    db.after_commit([&] { ++ran; });  // no transaction open: at once
    EXPECT_EQ(ran, 1);
    {
        keel::storage::Transaction outer(db);
        {
            keel::storage::Transaction inner(db);
            db.after_commit([&] { ++ran; });
            inner.commit();  // nested: nothing has landed yet
        }
        EXPECT_EQ(ran, 1);
        outer.commit();
    }
    EXPECT_EQ(ran, 2);
    {
        keel::storage::Transaction outer(db);
        db.after_commit([&] { ++ran; });
        db.after_commit([] { throw std::runtime_error("a failing action"); });
    }  // rolled back
    EXPECT_EQ(ran, 2);
    {
        keel::storage::Transaction tx(db);
        db.after_commit([] { throw std::runtime_error("a failing action does not undo the commit"); });
        db.after_commit([&] { ++ran; });
        tx.commit();
    }
    EXPECT_EQ(ran, 3);
}
