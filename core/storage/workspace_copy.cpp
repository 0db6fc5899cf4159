// core/storage/workspace_copy.cpp: `keel admin copy` (a whole workspace from one backend to another,
// verified by digest) and the canonical digest it verifies with.
#include "keel/storage/workspace_copy.hpp"

#include "backends.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/artifact_store.hpp"
#include "keel/storage/read_snapshot.hpp"
#include "keel/storage/s3_client.hpp"

#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>

namespace fs = std::filesystem;

namespace keel::storage {

namespace {

// Tables that describe the workspace's place, not its content: the schema versions (migrations
// make the destination's), the objects location and copy marker, PostgreSQL's change counter.
const std::set<std::string> kLocationTables = {"keel_schema", "keel_changes", "workspace_settings"};
constexpr size_t kBatchRows = 200;
constexpr int64_t kProgressRows = 2000;

class Sha256 {
public:
    Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
    void update(const void* data, size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }
    void update(std::string_view s) { update(s.data(), s.size()); }
    void tagged(char tag, uint64_t n) {
        unsigned char buf[9] = {static_cast<unsigned char>(tag)};
        for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<unsigned char>(n >> (56 - 8 * i));
        update(buf, sizeof buf);
    }
    std::string hex() {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(ctx_.get(), md, &len);
        static const char* digits = "0123456789abcdef";
        std::string out;
        for (unsigned i = 0; i < len; ++i) (out += digits[md[i] >> 4]) += digits[md[i] & 15];
        return out;
    }

private:
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

enum class Kind { Int, Real, Text, Blob };

struct Column {
    std::string name;
    Kind kind = Kind::Text;
    bool identity = false;  //!< PostgreSQL: an identity column, whose sequence must pass the copied ids
};

struct Table {
    std::string name;
    std::vector<Column> columns;
    std::vector<std::string> key;  //!< primary key columns in key order; empty: every column
};

struct Value {
    bool null = true;
    int64_t i = 0;
    double d = 0;
    std::string s;
};

Kind kind_of(std::string type) {
    for (auto& c : type) c = char(std::toupper(static_cast<unsigned char>(c)));
    if (type.find("INT") != std::string::npos) return Kind::Int;
    if (type.find("REAL") != std::string::npos || type.find("DOUB") != std::string::npos ||
        type.find("FLOA") != std::string::npos)
        return Kind::Real;
    if (type.find("BLOB") != std::string::npos || type.find("BYTEA") != std::string::npos) return Kind::Blob;
    return Kind::Text;
}

std::string quoted(const std::string& name) { return "\"" + name + "\""; }

// The workspace's tables in creation order (a table is created after those its keys refer to).
std::vector<std::string> list_tables(Db& db) {
    auto guard = db.lock();
    auto st = db.prepare(db.dialect() == Dialect::Sqlite
                             ? "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' "
                               "ORDER BY rowid"
                             : "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.oid");
    std::vector<std::string> out;
    while (st.step()) out.push_back(st.text(0));
    return out;
}

std::vector<std::string> content_tables(Db& db) {
    auto all = list_tables(db);
    std::erase_if(all, [](const std::string& t) { return kLocationTables.count(t) > 0; });
    return all;
}

Table describe_table(Db& db, const std::string& name) {
    auto guard = db.lock();
    Table t{name, {}, {}};
    if (db.dialect() == Dialect::Sqlite) {
        std::map<int64_t, std::string> key;
        auto st = db.prepare("SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid");
        st.bind(1, name);
        while (st.step()) {
            t.columns.push_back({st.text(0), kind_of(st.text(1)), false});
            if (st.int64(2) > 0) key[st.int64(2)] = st.text(0);
        }
        for (auto& [_, column] : key) t.key.push_back(column);
    } else {
        auto st = db.prepare("SELECT column_name, data_type, is_identity FROM information_schema.columns "
                             "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position");
        st.bind(1, name);
        while (st.step()) t.columns.push_back({st.text(0), kind_of(st.text(1)), st.text(2) == "YES"});
        auto pk = db.prepare("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                             "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = CAST(? AS regclass) AND i.indisprimary "
                             "ORDER BY array_position(CAST(i.indkey AS int2[]), a.attnum)");
        pk.bind(1, quoted(name));
        while (pk.step()) t.key.push_back(pk.text(0));
    }
    if (t.columns.empty()) throw_error(ErrorKind::Internal, "table '{}' has no columns in {}", name, db.path());
    return t;
}

std::string select_sql(const Table& t) {
    std::string cols, order;
    for (const auto& c : t.columns) cols += (cols.empty() ? "" : ", ") + quoted(c.name);
    if (t.key.empty()) {
        for (const auto& c : t.columns) order += (order.empty() ? "" : ", ") + quoted(c.name) + " NULLS FIRST";
    } else {
        for (const auto& k : t.key) order += (order.empty() ? "" : ", ") + quoted(k);
    }
    return fmt::format("SELECT {} FROM {} ORDER BY {}", cols, quoted(t.name), order);
}

Value read_value(Stmt& st, int col, Kind kind) {
    Value v;
    if (st.is_null(col)) return v;
    v.null = false;
    switch (kind) {
        case Kind::Int: v.i = st.int64(col); break;
        case Kind::Real: v.d = st.real(col); break;
        case Kind::Text: v.s = st.text(col); break;
        case Kind::Blob: v.s = st.blob(col); break;
    }
    return v;
}

void hash_value(Sha256& h, const Value& v, Kind kind) {
    if (v.null) return h.tagged('N', 0);
    switch (kind) {
        case Kind::Int: return h.tagged('I', uint64_t(v.i));
        case Kind::Real: {
            uint64_t bits;
            std::memcpy(&bits, &v.d, sizeof bits);
            return h.tagged('D', bits);
        }
        case Kind::Text: h.tagged('T', v.s.size()); return h.update(v.s);
        case Kind::Blob: h.tagged('B', v.s.size()); return h.update(v.s);
    }
}

void bind_value(Stmt& st, int index, const Value& v, Kind kind) {
    if (v.null) {
        st.bind(index, nullptr);
        return;
    }
    switch (kind) {
        case Kind::Int: st.bind(index, v.i); break;
        case Kind::Real: st.bind(index, v.d); break;
        case Kind::Text: st.bind(index, std::string_view(v.s)); break;
        case Kind::Blob: st.bind_blob(index, v.s.data(), v.s.size()); break;
    }
}

int64_t count_rows(Db& db, const std::string& table) {
    auto guard = db.lock();
    auto st = db.prepare(fmt::format("SELECT COUNT(*) FROM {}", quoted(table)));
    return st.step() ? st.int64(0) : 0;
}

// Reads `t`'s rows in key order into the digest, handing each batch to `sink` when given.
TableDigest read_table(Db& db, const Table& t, const std::function<void(std::vector<std::vector<Value>>&)>& sink,
                       const CopyProgressFn& progress, int64_t& done, int64_t total) {
    auto guard = db.lock();
    Sha256 h;
    h.tagged('S', t.columns.size());
    for (const auto& c : t.columns) {
        h.tagged('C', c.name.size());
        h.update(c.name);
    }
    TableDigest out{t.name, 0, {}};
    std::vector<std::vector<Value>> batch;
    auto st = db.prepare(select_sql(t));
    while (st.step()) {
        std::vector<Value> row;
        row.reserve(t.columns.size());
        h.tagged('R', 0);
        for (size_t c = 0; c < t.columns.size(); ++c) {
            row.push_back(read_value(st, int(c), t.columns[c].kind));
            hash_value(h, row.back(), t.columns[c].kind);
        }
        ++out.rows;
        if (sink) {
            batch.push_back(std::move(row));
            if (batch.size() == kBatchRows) sink(batch), batch.clear();
        }
        if (progress && ++done % kProgressRows == 0) progress({"rows", t.name, done, total});
    }
    if (sink && !batch.empty()) sink(batch);
    out.sha256 = h.hex();
    return out;
}

std::vector<TableDigest> table_digests(Db& db, const CopyProgressFn& progress) {
    std::vector<TableDigest> out;
    auto tables = content_tables(db);
    int64_t total = 0, done = 0;
    if (progress)
        for (const auto& t : tables) total += count_rows(db, t);
    for (const auto& name : tables) {
        auto d = read_table(db, describe_table(db, name), {}, progress, done, total);
        if (d.rows > 0) out.push_back(std::move(d));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.table < b.table; });
    return out;
}

std::vector<ObjectEntry> list_objects(ObjectStore& objects) {
    std::vector<ObjectEntry> out;
    for (const auto& prefix : kObjectPrefixes)
        for (auto& e : objects.list(prefix)) out.push_back(std::move(e));
    return out;
}

// The sha256 an artifact's key names ("artifacts/sha256/ab/cdef..."), or "" for other objects.
std::string addressed_sha256(const std::string& key) {
    constexpr std::string_view prefix = "artifacts/sha256/";
    if (!key.starts_with(prefix) || key.size() != prefix.size() + 2 + 1 + 62 || key[prefix.size() + 2] != '/') return "";
    return key.substr(prefix.size(), 2) + key.substr(prefix.size() + 3);
}

std::vector<WorkspaceDigest::Object> hash_objects(ObjectStore& objects, const std::vector<ObjectEntry>& entries,
                                                  const CopyProgressFn& progress) {
    int64_t total = 0, done = 0;
    for (const auto& e : entries) total += e.size;
    std::vector<WorkspaceDigest::Object> out;
    for (const auto& e : entries) {
        if (progress) progress({"verify", e.key, done, total});
        auto local = objects.fetch(e.key);
        out.push_back({e.key, e.size, sha256_file(local.path)});
        done += e.size;
    }
    if (progress) progress({"verify", "", done, total});
    return out;
}

std::string describe_contents(const std::vector<std::string>& names, const char* what) {
    std::string shown;
    for (size_t i = 0; i < names.size() && i < 5; ++i) shown += (i ? ", " : "") + names[i];
    if (names.size() > 5) shown += fmt::format(" and {} more", names.size() - 5);
    return fmt::format("{} {}", what, shown);
}

[[noreturn]] void refuse_destination(const std::string& dst, const std::string& holds) {
    throw_error(ErrorKind::AlreadyExists,
                "copy destination {} is not empty (it holds {}): `keel admin copy` writes into a new or empty "
                "workspace only; pick another destination or remove what is there",
                dst, holds);
}

// Refuses a destination that holds anything, before anything is written to it.
void check_destination_empty(const WorkspaceLocation& dst) {
    std::error_code ec;
    if (WorkspaceLocation::is_database_url(dst.workspace)) {
        Db db(open_postgres(dst.workspace));
        auto tables = list_tables(db);
        std::erase_if(tables, [](const std::string& t) { return t == "keel_changes"; });
        if (!tables.empty()) refuse_destination(db.path(), describe_contents(tables, "tables"));
    } else if (fs::exists(dst.workspace, ec)) {
        if (!fs::is_directory(dst.workspace, ec))
            throw_error(ErrorKind::InvalidArgument, "copy destination '{}' is a file, not a directory", dst.workspace);
        std::vector<std::string> names;
        for (const auto& entry : fs::directory_iterator(dst.workspace, ec)) names.push_back(entry.path().filename().string());
        std::sort(names.begin(), names.end());
        if (!names.empty()) refuse_destination(dst.workspace, describe_contents(names, "files"));
    }
    if (dst.artifacts.starts_with("s3://")) {
        const fs::path scratch = fs::temp_directory_path() / fmt::format("keel-copy-check-{}", ::getpid());
        auto store = s3_object_store(S3Config::from_env(), S3Location::parse(dst.artifacts), {scratch, int64_t(1) << 30});
        std::vector<std::string> keys;
        for (auto& e : store->list("")) {
            keys.push_back(e.key);
            if (keys.size() > 5) break;
        }
        fs::remove_all(scratch, ec);
        if (!keys.empty()) refuse_destination(store->url(), describe_contents(keys, "objects"));
    } else if (!dst.artifacts.empty()) {
        for (const auto& prefix : kObjectPrefixes)
            if (fs::path dir = fs::path(dst.artifacts) / prefix; !fs::is_empty(dir, ec) && !ec)
                refuse_destination(dst.artifacts, describe_contents({dir.string()}, "objects in"));
    }
}

// The source's modules must be at this Keel's versions: the destination is created at them. Returns
// the modules the source has (the destination gets those, and the rest as any workspace does, when
// first used).
std::vector<const ModuleSchema*> check_source_schema(Db& db, const std::vector<const ModuleSchema*>& schemas) {
    std::vector<const ModuleSchema*> present;
    for (const auto& s : db.schema_status(schemas)) {
        if (s.known == 0)
            throw_error(ErrorKind::Corrupt,
                        "workspace '{}' has '{}' tables (schema version {}) that this Keel does not know: upgrade Keel "
                        "to copy it",
                        db.path(), s.module, s.version);
        if (s.newer())
            throw_error(ErrorKind::Corrupt,
                        "workspace '{}' has '{}' tables at schema version {}, but this Keel knows only up to version "
                        "{}: upgrade Keel to copy it",
                        db.path(), s.module, s.version, s.known);
        if (s.version > 0 && !s.pending.empty())
            throw_error(ErrorKind::InvalidArgument,
                        "workspace '{}' has '{}' tables at schema version {}, older than this Keel's {}: run `keel admin "
                        "migrate` on it first",
                        db.path(), s.module, s.version, s.known);
        if (s.version > 0)
            for (const ModuleSchema* schema : schemas)
                if (schema->module == s.module) present.push_back(schema);
    }
    return present;
}

void insert_batch(Db& db, const Table& t, std::vector<std::vector<Value>>& rows) {
    std::string cols, one, values;
    for (const auto& c : t.columns) cols += (cols.empty() ? "" : ", ") + quoted(c.name);
    for (size_t c = 0; c < t.columns.size(); ++c) one += c ? ", ?" : "(?";
    one += ")";
    for (size_t r = 0; r < rows.size(); ++r) values += (r ? ", " : "") + one;
    auto st = db.prepare(fmt::format("INSERT INTO {} ({}) VALUES {}", quoted(t.name), cols, values));
    int index = 0;
    for (const auto& row : rows)
        for (size_t c = 0; c < row.size(); ++c) bind_value(st, ++index, row[c], t.columns[c].kind);
    st.run();
}

// PostgreSQL: an identity column's sequence continues after the largest id copied.
void advance_identities(Db& db, const Table& t) {
    if (db.dialect() != Dialect::Postgres) return;  // SQLite's AUTOINCREMENT follows the inserted ids itself
    for (const auto& c : t.columns) {
        if (!c.identity) continue;
        auto st = db.prepare(fmt::format("SELECT setval(pg_get_serial_sequence(?, ?), COALESCE((SELECT MAX({}) FROM {}), "
                                         "0) + 1, false)",
                                         quoted(c.name), quoted(t.name)));
        st.bind_all(quoted(t.name), c.name).run();
    }
}

std::vector<TableDigest> copy_tables(Db& src, Db& dst, const CopyProgressFn& progress) {
    const auto tables = content_tables(src);
    const auto dst_tables = list_tables(dst);
    int64_t total = 0, done = 0;
    for (const auto& t : tables) total += count_rows(src, t);
    std::vector<TableDigest> out;
    Transaction tx(dst);
    if (dst.dialect() == Dialect::Sqlite) dst.exec("PRAGMA defer_foreign_keys = ON");
    for (const auto& name : tables) {
        if (std::find(dst_tables.begin(), dst_tables.end(), name) == dst_tables.end())
            throw_error(ErrorKind::Corrupt,
                        "table '{}' of workspace '{}' is not one of this Keel's tables: it cannot be copied (upgrade "
                        "Keel, or remove the table)",
                        name, src.path());
        const Table t = describe_table(src, name);
        const Table target = describe_table(dst, name);
        for (const auto& c : t.columns)
            if (std::none_of(target.columns.begin(), target.columns.end(), [&](const Column& d) { return d.name == c.name; }))
                throw_error(ErrorKind::Corrupt, "column '{}.{}' of workspace '{}' is missing at the destination {}",
                            name, c.name, src.path(), dst.path());
        dst.exec(fmt::format("DELETE FROM {}", quoted(name)));  // rows a schema step seeded (keel_generation's)
        Table written = t;
        for (auto& c : written.columns)
            for (const auto& d : target.columns)
                if (d.name == c.name) c.identity = d.identity;
        auto digest = read_table(src, t, [&](auto& rows) { insert_batch(dst, written, rows); }, progress, done, total);
        advance_identities(dst, written);
        if (digest.rows > 0) out.push_back(std::move(digest));
    }
    tx.commit();
    if (progress) progress({"rows", "", done, total});
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.table < b.table; });
    return out;
}

std::vector<WorkspaceDigest::Object> copy_objects(Workspace& src, Workspace& dst, const CopyProgressFn& progress) {
    const auto entries = list_objects(src.objects());
    int64_t total = 0, done = 0;
    for (const auto& e : entries) total += e.size;
    std::vector<WorkspaceDigest::Object> out;
    for (const auto& e : entries) {
        if (progress) progress({"objects", e.key, done, total});
        const std::string addressed = addressed_sha256(e.key);
        LocalObject local;
        try {
            local = src.objects().fetch(e.key, addressed);
        } catch (const Error& err) {
            // Removed by a writer since it was listed: if the snapshot's rows name it, the check
            // after the copy says so; otherwise it was an object on its way out.
            if (err.kind() != ErrorKind::NotFound) throw;
            continue;
        }
        const auto slash = e.key.rfind('/');
        const fs::path staged = dst.objects().stage(std::string_view(e.key).substr(0, slash));
        try {
            fs::copy_file(local.path, staged, fs::copy_options::overwrite_existing);
        } catch (const fs::filesystem_error& err) {
            std::error_code ec;
            fs::remove(staged, ec);
            throw_error(ErrorKind::Internal, "cannot copy object '{}' ({}): {}", e.key, src.objects().describe(e.key),
                        err.what());
        }
        const std::string sha = sha256_file(staged);
        if (!addressed.empty() && sha != addressed) {
            std::error_code ec;
            fs::remove(staged, ec);
            throw_error(ErrorKind::Corrupt,
                        "artifact {} of the source is damaged: its content has sha256 {}, not the {} its key names; "
                        "nothing more was copied (restore the artifact, or remove what refers to it, and copy again)",
                        src.objects().describe(e.key), sha, addressed);
        }
        const int64_t size = int64_t(fs::file_size(staged));
        dst.objects().commit(staged, e.key, addressed);
        out.push_back({e.key, size, sha});
        done += e.size;
    }
    if (progress) progress({"objects", "", done, total});
    return out;
}

// Reads the destination's objects back (from S3 itself: a fresh cache) and compares them.
void verify_objects(Workspace& dst, const std::vector<WorkspaceDigest::Object>& copied, const CopyProgressFn& progress) {
    std::unique_ptr<ObjectStore> fresh;
    fs::path scratch;
    ObjectStore* store = &dst.objects();
    if (!dst.objects().is_local()) {
        scratch = fs::temp_directory_path() / fmt::format("keel-copy-verify-{}-{}", ::getpid(), now_ms());
        fresh = s3_object_store(S3Config::from_env(), S3Location::parse(dst.objects().url()), {scratch, int64_t(1) << 40});
        store = fresh.get();
    }
    struct Cleanup {
        fs::path dir;
        ~Cleanup() {
            std::error_code ec;
            if (!dir.empty()) fs::remove_all(dir, ec);
        }
    } cleanup{scratch};
    const auto entries = list_objects(*store);
    std::map<std::string, int64_t> listed;
    for (const auto& e : entries) listed[e.key] = e.size;
    for (const auto& o : copied)
        if (!listed.count(o.key))
            throw_error(ErrorKind::Corrupt, "object '{}' was copied but is missing at the destination {}", o.key,
                        store->describe(o.key));
    if (listed.size() != copied.size())
        for (const auto& e : entries)
            if (std::none_of(copied.begin(), copied.end(), [&](const auto& o) { return o.key == e.key; }))
                throw_error(ErrorKind::Corrupt, "the destination holds object '{}' that the source does not", e.key);
    const auto read_back = hash_objects(*store, entries, progress);
    for (size_t i = 0; i < read_back.size(); ++i) {
        const auto& got = read_back[i];
        const auto& want = *std::find_if(copied.begin(), copied.end(), [&](const auto& o) { return o.key == got.key; });
        if (got.size != want.size || got.sha256 != want.sha256)
            throw_error(ErrorKind::Corrupt,
                        "object '{}' differs at the destination {}: {} bytes with sha256 {}, the source's has {} bytes "
                        "with sha256 {}",
                        got.key, store->describe(got.key), got.size, got.sha256, want.size, want.sha256);
    }
}

// Every object the snapshot's rows name was there to copy: a writer may have removed one since the
// snapshot was taken (its rows are gone from the source, not from the snapshot).
void check_named_copied(Db& src, const ObjectRefsList& refs, const std::vector<WorkspaceDigest::Object>& copied,
                        Workspace& source) {
    std::set<std::string> have;
    for (const auto& o : copied) have.insert(o.key);
    std::vector<std::string> missing;
    for (const auto& key : named_object_keys(src, refs))
        if (!have.count(key)) missing.push_back(key);
    if (missing.empty()) return;
    std::sort(missing.begin(), missing.end());
    throw_error(ErrorKind::Conflict,
                "object {} is named by the source's rows as the copy read them, but it was removed from {} while "
                "the copy ran (a writer retired a view or replaced an online snapshot){}: copy again, into a new "
                "destination",
                missing.front(), source.objects().describe(missing.front()),
                missing.size() > 1 ? fmt::format(", and {} more", missing.size() - 1) : "");
}

void verify_tables(Db& dst, const std::vector<TableDigest>& copied) {
    const auto got = table_digests(dst, {});
    std::map<std::string, const TableDigest*> by_name;
    for (const auto& d : got) by_name[d.table] = &d;
    for (const auto& want : copied) {
        auto it = by_name.find(want.table);
        if (it == by_name.end() || it->second->sha256 != want.sha256 || it->second->rows != want.rows)
            throw_error(ErrorKind::Corrupt,
                        "table '{}' differs at the destination {}: {} rows with digest {}, the source's {} rows with "
                        "digest {}",
                        want.table, dst.path(), it == by_name.end() ? 0 : it->second->rows,
                        it == by_name.end() ? "-" : it->second->sha256, want.rows, want.sha256);
        by_name.erase(it);
    }
    if (!by_name.empty())
        throw_error(ErrorKind::Corrupt, "table '{}' has rows at the destination {} but none at the source",
                    by_name.begin()->first, dst.path());
}

} // namespace

int64_t WorkspaceDigest::object_bytes() const {
    int64_t total = 0;
    for (const auto& o : objects) total += o.size;
    return total;
}

std::string WorkspaceDigest::objects_sha256() const {
    Sha256 h;
    for (const auto& o : objects) h.update(fmt::format("{} {} {}\n", o.key, o.size, o.sha256));
    return h.hex();
}

WorkspaceDigest workspace_digest(Workspace& ws, const CopyProgressFn& progress) {
    WorkspaceDigest out;
    {
        // One snapshot for every table (unless the caller is inside a transaction: then its view).
        auto guard = ws.db().lock();
        std::optional<ReadSnapshot> snapshot;
        if (!ws.db().in_transaction()) snapshot.emplace(ws.db());
        out.tables = table_digests(ws.db(), progress);
    }
    out.objects = hash_objects(ws.objects(), list_objects(ws.objects()), progress);
    return out;
}

WorkspaceDigest copy_workspace(const WorkspaceLocation& src, const WorkspaceLocation& dst,
                               const std::vector<const ModuleSchema*>& schemas, const CopyProgressFn& progress,
                               const ObjectRefsList& refs) {
    std::error_code ec;
    if (!WorkspaceLocation::is_database_url(src.workspace) && !fs::exists(fs::path(src.workspace) / "keel.db", ec))
        throw_error(ErrorKind::NotFound, "copy source '{}' is not a Keel workspace (no keel.db): pass the folder that "
                    "holds keel.db, or a postgresql:// URL", src.workspace);
    auto source = Workspace::open(src);
    const auto present = check_source_schema(source->db(), schemas);
    check_destination_empty(dst);
    auto target = Workspace::open_copy_target(dst, source->on_database() ? source->db().path() : source->path().string());
    for (const ModuleSchema* schema : present) target->db().ensure_schema(*schema);

    WorkspaceDigest out;
    // One consistent snapshot of the source's rows, read without its write lock: writers to the
    // source go on while the copy runs, and the copy (and its digest check) is of the snapshot. The
    // objects are listed after the snapshot is taken, so every object its rows name is there (an
    // object stored after it and named by no copied row is copied too: only space).
    ReadSnapshot snapshot(source->db());
    out.tables = copy_tables(source->db(), target->db(), progress);
    out.objects = copy_objects(*source, *target, progress);
    check_named_copied(source->db(), refs, out.objects, *source);
    verify_tables(target->db(), out.tables);
    verify_objects(*target, out.objects, progress);
    target->finish_copy();
    return out;
}

} // namespace keel::storage
