// core/include/keel/tracking/filter.hpp
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace keel::tracking {

//! What a filter term or order_by key refers to.
enum class Entity { Metric, Param, Tag, Attribute };

//! One `entity.key op value` term of a run filter. Terms are joined by AND.
//!
//! Grammar (keywords case-insensitive):
//!   filter  := term (AND term)*
//!   term    := key op value | key [NOT] IN '(' string (',' string)* ')'
//!   key     := (metrics|params|tags|attributes) '.' name | attribute
//!   name    := identifier | `back quoted` | "double quoted"
//!   attribute := status | name | run_name | run_id | parent_id | user | start_time | end_time | experiment
//!   op      := = | != | < | <= | > | >= | LIKE | ILIKE
//!   value   := number (metrics, start_time, end_time) | 'string' (everything else)
struct Term {
    Entity entity = Entity::Attribute;
    std::string key; //!< metric/param/tag key, or the canonical attribute name
    std::string op;  //!< "=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN"
    std::variant<double, std::string, std::vector<std::string>> value;
};

//! A parsed order_by item: `metrics.auc DESC`, `start_time`, `params.lr ASC`.
struct OrderKey {
    Entity entity = Entity::Attribute;
    std::string key;
    bool ascending = true;
};

//! Limits that keep a filter inside what one SQL query can hold (SQLite joins at most 64 tables and
//! binds at most 32,766 values); past them a filter is InvalidArgument naming the limit.
inline constexpr size_t kMaxFilterTerms = 50;
inline constexpr size_t kMaxFilterInItems = 10'000; //!< across all IN lists of one filter

//! Parses a filter; an empty or blank string gives no terms. A malformed filter throws
//! InvalidArgument naming the position and the text of the bad token and what was expected.
std::vector<Term> parse_filter(std::string_view filter);

//! Parses one order_by item; InvalidArgument when malformed.
OrderKey parse_order_key(std::string_view text);

//! True for attributes stored as numbers (start_time, end_time).
bool numeric_attribute(std::string_view name);

} // namespace keel::tracking
