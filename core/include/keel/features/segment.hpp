// core/include/keel/features/segment.hpp
#pragma once

#include "keel/features/table.hpp"

#include <filesystem>
#include <memory>
#include <string_view>
#include <vector>

namespace keel::features {

//! An immutable columnar file (offline segment or online snapshot), memory-mapped for reading.
//!
//! Layout: "KEELSEG1", u32 format version, u32 column count, u64 rows, u64 zero, then 64-byte
//! aligned column blocks (values, string offsets, validity bytes), then the directory (per column:
//! name, dtype, dim and the block offsets), then the trailer: u64 directory offset and (format
//! version 2) the XXH3-64 checksum of every byte before it. Files are written whole to a temporary
//! name, fsynced and renamed, so a reader never sees a partial one. Every number is little-endian
//! (header, directory, trailer, values, string offsets); value blocks are read in place through the
//! mapping, so Keel builds only where host order is little-endian (keel/common/endian.hpp).
//!
//! Opening verifies the checksum and every offset, length and count (version 1 files, written
//! before the checksum, get the structural checks only); anything wrong raises Corrupt naming the
//! file. A segment that opens never makes a reader step outside its bytes.
class Segment {
public:
    //! Writes `batch` to `path` atomically (temp file + fsync + rename + directory fsync).
    //! `order`, when not empty, is the row permutation to write (a sorted order).
    static void write(const std::filesystem::path& path, const BatchView& batch, const std::vector<uint32_t>& order = {});
    //! Writes to `path`, a new file nobody reads yet (an object store's staging path): created
    //! exclusively, fsynced, no rename. Removed again when the write fails.
    static void write_new(const std::filesystem::path& path, const BatchView& batch,
                          const std::vector<uint32_t>& order = {});
    //! Serializes a batch to bytes in the same format (for blobs kept in the artifact store).
    static std::string to_bytes(const BatchView& batch);

    //! Maps the file read-only; throws Corrupt (naming the file and the fault) when it is not a
    //! well-formed segment or its checksum does not match.
    static std::shared_ptr<const Segment> open(const std::filesystem::path& path);
    //! The same, for a local copy of an object: `hold` is kept as long as the segment lives (the
    //! object cache's pin, so the mapped file is not evicted) and messages name `source` (the
    //! object's URL) instead of the local path.
    static std::shared_ptr<const Segment> open(const std::filesystem::path& path, std::shared_ptr<const void> hold,
                                               std::string source);
    //! Reads a segment from bytes (copied into memory the segment owns).
    static std::shared_ptr<const Segment> from_bytes(std::string bytes);

    ~Segment();
    Segment(const Segment&) = delete;
    Segment& operator=(const Segment&) = delete;

    size_t rows() const { return rows_; }
    const std::vector<ColumnView>& columns() const { return columns_; }
    //! The column called `name`, or nullptr (a column added to the view after this segment was written).
    const ColumnView* column(std::string_view name) const;
    const BatchView& batch() const { return batch_; }
    //! The file it was read from ("blob" for bytes), for messages.
    const std::string& source() const { return source_; }
    //! 1 (no checksum) or 2.
    uint32_t format_version() const { return format_version_; }
    //! Throws Corrupt naming the file unless every `required` column is present and every column
    //! of `required` and `optional` that is present has the spec's type (and vector length).
    void check_columns(const std::vector<ColumnSpec>& required, const std::vector<ColumnSpec>& optional) const;

private:
    Segment() = default;
    void parse();
    std::string source_;
    uint32_t format_version_ = 0;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
    std::string owned_;
    std::shared_ptr<const void> hold_;
    size_t rows_ = 0;
    std::vector<ColumnView> columns_;
    BatchView batch_;
};

} // namespace keel::features
