// core/include/keel/features/schema.hpp
#pragma once

#include "keel/common/columns.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::features {

// Feature columns hold the core's column types (keel/common/columns.hpp).
using keel::DType;
using keel::dtype_name;
using keel::dtype_width;
using keel::parse_dtype;

//! One typed column of a feature view (or a join key, or a timestamp column).
struct ColumnSpec {
    std::string name;
    DType dtype = DType::Float64;
    uint32_t dim = 0;  //!< length of a Vector column, 0 otherwise
    bool pii = false;  //!< masked on read unless the caller's role holds a grant
    bool operator==(const ColumnSpec&) const = default;
};

//! An entity: what feature rows are about, identified by one or more join keys.
struct EntitySpec {
    std::string name;
    std::vector<ColumnSpec> join_keys;  //!< each Int64 or String
    std::string description;
};

//! A feature view definition at one version. Compatible changes (adding columns, editing owner,
//! description, tags, TTL) update the current version in place; incompatible ones (a column removed
//! or retyped, other entities, other timestamp columns) start a new version with no data.
struct ViewSpec {
    std::string name;
    int64_t version = 0;
    std::vector<std::string> entities;
    std::vector<ColumnSpec> join_keys;  //!< resolved from the entities, in order
    std::vector<ColumnSpec> features;   //!< the feature columns, in schema order
    int64_t ttl_ms = 0;                 //!< 0 means values never expire
    std::string owner;
    std::string description;
    std::map<std::string, std::string> tags;
    std::string event_column = "event_timestamp";
    std::string created_column = "created_timestamp";

    //! The feature column called `name`, or nullptr.
    const ColumnSpec* feature(std::string_view name) const;
    //! True when the key is one integer (the fast path for joins and online lookups).
    bool int_key() const { return join_keys.size() == 1 && join_keys[0].dtype == DType::Int64; }
};

} // namespace keel::features
