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
//! Layout: "KEELSEG1", u32 format version, u32 column count, u64 rows, u64 directory offset, then
//! 64-byte aligned column blocks (values, string offsets, validity bytes), then the directory (per
//! column: name, dtype, dim and the block offsets). Files are written whole to a temporary name,
//! fsynced and renamed, so a reader never sees a partial one.
class Segment {
public:
    //! Writes `batch` to `path` atomically (temp file + fsync + rename + directory fsync).
    //! `order`, when not empty, is the row permutation to write (a sorted order).
    static void write(const std::filesystem::path& path, const BatchView& batch, const std::vector<uint32_t>& order = {});
    //! Serializes a batch to bytes in the same format (for blobs kept in the artifact store).
    static std::string to_bytes(const BatchView& batch);

    //! Maps the file read-only; throws Corrupt when it is not a well-formed segment.
    static std::shared_ptr<const Segment> open(const std::filesystem::path& path);
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

private:
    Segment() = default;
    void parse(const std::string& what);
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
    std::string owned_;
    size_t rows_ = 0;
    std::vector<ColumnView> columns_;
    BatchView batch_;
};

} // namespace keel::features
