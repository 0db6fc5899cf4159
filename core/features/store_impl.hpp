// core/features/store_impl.hpp: internals shared by the feature store's .cpp files (not installed).
#pragma once

#include "keel/features/online.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/workspace.hpp"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace keel::features {

struct FeatureStore::Impl {
    std::mutex mu;
    std::map<int64_t, std::shared_ptr<const Segment>> segments;
    std::map<int64_t, std::shared_ptr<const std::vector<std::string>>> encoded_keys;
    std::vector<std::weak_ptr<OnlineReader>> readers;
    std::string salt;
    std::string online_namespace;  //!< prefixes the workspace's Redis keys (redis_online::prefix)
    //! What get_online read of the catalog (online.cpp), kept while the change token stays.
    struct OnlineCatalog;
    std::mutex online_mu;  //!< guards online_catalog
    std::shared_ptr<OnlineCatalog> online_catalog;
};

namespace detail {

//! Who retired a view, and when.
struct Retirement {
    std::string by;
    int64_t at_ms = 0;
    std::string text() const;  //!< "<user> at <UTC time>"
};

//! A view version as stored. Without `include_retired`, a retired view is NotFound saying who
//! retired it (what FeatureStore::view does); with it, what rebuilding a recorded set reads.
ViewSpec load_view(FeatureStore& store, const std::string& name, std::optional<int64_t> version,
                   bool include_retired);
//! Set when `name` is a retired view.
std::optional<Retirement> retirement(FeatureStore& store, const std::string& name);
//! The names of the live views, sorted, as an error message lists them ("none" when there are none).
std::string live_view_names(FeatureStore& store);

//! Join key columns as features_views.join_keys stores them: "name\tdtype" lines, in order.
std::string encode_keys(const std::vector<ColumnSpec>& keys);
//! Tags as stored ("key\tvalue" lines) and back.
std::string encode_tags(const std::map<std::string, std::string>& tags);
std::map<std::string, std::string> decode_tags(const std::string& text);

//! Feature store files are objects of the workspace's ObjectStore under "features/"; the metadata
//! records their name relative to it (features_segments.file, features_online.file). On a remote
//! store the name carries the file's sha256 ("<stem>-<sha256>.kseg"), so that every download is
//! verified against the metadata, not only against the file's own checksum.
//!
//! Writes a segment as the new file `<stem>.kseg` (a path relative to features/, unique) and
//! returns the name to record. Call before writing the row that names it: a failure in between
//! leaves at most an unreferenced object.
std::string write_segment_file(storage::Workspace& ws, const std::string& stem, const BatchView& batch,
                               const std::vector<uint32_t>& order = {});
//! Opens a recorded file (mapped; for S3 a verified cached copy). Corrupt naming it when it is
//! missing or damaged.
std::shared_ptr<const Segment> open_segment_file(storage::Workspace& ws, const std::string& file);
//! Removes a recorded file's object (readers that mapped it keep their copy); errors are ignored:
//! a leftover is only an unreferenced object.
void remove_segment_file(storage::Workspace& ws, const std::string& file);

//! The live readers of this store reload their snapshots (after a materialization or a retirement).
void refresh_readers(FeatureStore& store);

//! Bumped by every grant or revoke in this process (any FeatureStore): a reader whose last grants
//! check predates it shows no PII column until it checks again.
extern std::atomic<uint64_t> grants_epoch;

struct SegRef {
    int64_t id = 0;
    std::shared_ptr<const Segment> seg;
};

//! The registered segments of a view version (ascending id), up to max_id when given.
std::vector<SegRef> list_segments(FeatureStore& store, const ViewSpec& spec, std::optional<int64_t> max_id);
//! Corrupt naming the file unless `seg` has the view's keys and timestamps, and its features (those
//! it has: a column added later is absent from older segments) have the view's types. Readers rely
//! on it to index columns by the view's types.
void check_segment_columns(const Segment& seg, const ViewSpec& spec);
//! The largest segment id of a view version (0 when empty).
int64_t max_segment_id(FeatureStore& store, const ViewSpec& spec);

//! The join keys of each row: int64 values for single-int keys (borrowed), otherwise an
//! order-consistent byte encoding of the key tuple. `valid[i] == 0` marks a null key.
struct RowKeys {
    bool is_int = false;
    const int64_t* ints = nullptr;
    std::vector<uint8_t> valid;  // empty: all valid
    std::vector<std::string> owned;
    const std::vector<std::string>* strs = nullptr;
    std::shared_ptr<const std::vector<std::string>> hold;
    bool ok(size_t i) const { return valid.empty() || valid[i] != 0; }
};

//! A stored row: its source (a segment, or a snapshot, by index into a RowKeys list), its row, and
//! its event and created times.
struct RowRef {
    int32_t src;
    uint32_t row;
    int64_t ev;
    int64_t cr;
};
//! Orders two rows by their join keys: negative, zero or positive. Inline: it is the comparator of
//! the sorts in materialize and offline reads, called O(n log n) times; out of line, the calls made
//! a 1M-row materialize about 1.6x slower (bench/README.md).
inline int compare_keys(const std::vector<RowKeys>& keys, const RowRef& a, const RowRef& b) {
    const auto &ka = keys[size_t(a.src)], &kb = keys[size_t(b.src)];
    if (ka.is_int) {
        int64_t x = ka.ints[a.row], y = kb.ints[b.row];
        return x < y ? -1 : (x > y ? 1 : 0);
    }
    return (*ka.strs)[a.row].compare((*kb.strs)[b.row]);
}
//! Sorts rows by key, event time, created time, then source and row, so that within a (key, event
//! time) group the row that wins (latest created, then latest written) comes last. The offline read
//! and the online snapshot build pick winners the same way through this one order.
void sort_by_key_and_time(std::vector<RowRef>& refs, const std::vector<RowKeys>& keys);

//! Extracts the view's join keys from a batch; InvalidArgument names a missing or mistyped column
//! (`what` says whose: "labels", "keys").
RowKeys batch_keys(const ViewSpec& spec, const BatchView& batch, const char* what);
//! Keys of a stored segment (the encoded form cached per segment).
RowKeys segment_keys(FeatureStore& store, const ViewSpec& spec, int64_t seg_id, const Segment& seg);

//! out = column `spec` gathered from segments: for i in [begin, end), output row dest[i] (or i when
//! dest is null) comes from cols[seg_of[i]] at row_of[i] (seg_of[i] < 0 or a missing column gives
//! null). `out` must be sized (prepare_column).
void gather(Column& out, const std::vector<const ColumnView*>& cols, const int32_t* seg_of, const uint32_t* row_of,
            size_t begin, size_t end, const uint32_t* dest = nullptr);
//! Allocates `out` for `rows` rows of `spec`'s type (strings are appended by gather_strings).
void prepare_column(Column& out, const ColumnSpec& spec, size_t rows);
//! Strings need a sequential pass: gathers the whole column.
void gather_strings(Column& out, const std::vector<const ColumnView*>& cols, const int32_t* seg_of,
                    const uint32_t* row_of, size_t rows);
//! prepare_column, then gather or gather_strings as the type needs: row i of `out` from
//! cols[seg_of[i]] at row_of[i], for all `rows` rows.
void gather_column(Column& out, const ColumnSpec& spec, const std::vector<const ColumnView*>& cols,
                   const int32_t* seg_of, const uint32_t* row_of, size_t rows);
//! Drops validity bytes when every row is valid.
void compact_valid(Column& out);

//! Masks a PII column the role may not read: strings hashed, other types nulled.
void mask_if_needed(FeatureStore& store, const std::string& role, const std::string& view, const ColumnSpec& spec,
                    Column& out);
//! Masks `out` unconditionally (what mask_if_needed does once it found no grant).
void mask(FeatureStore& store, Column& out);

//! Creates or updates a lineage node (keel::lineage::Graph).
void lineage_node(FeatureStore& store, const std::string& ref, const std::string& owner, const std::string& description,
                  const std::map<std::string, std::string>& tags = {});
//! Adds the lineage edge from -kind-> to (data flows from `from` to `to`).
void lineage_edge(FeatureStore& store, const std::string& from, const std::string& kind, const std::string& to);

//! Runs fn(begin, end) over [0, n) on up to `threads` threads.
void parallel_for(size_t n, size_t threads, const std::function<void(size_t, size_t)>& fn);

//! The non-empty lines of a stored list (entities, features: one name per line).
std::vector<std::string> split_lines(const std::string& text);

//! The table a read returns: `specs` gathered row by row from `segs` (row i from segment seg_of[i]
//! at row_of[i]), PII masked for the workspace's role. The offline read and the key-range read of
//! the engines build their output through this one function.
Table gather_table(FeatureStore& store, const std::string& view, const std::vector<ColumnSpec>& specs,
                   const std::vector<SegRef>& segs, const std::vector<int32_t>& seg_of,
                   const std::vector<uint32_t>& row_of, size_t n);

} // namespace detail
} // namespace keel::features
