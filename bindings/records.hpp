// bindings/records.hpp: a core record's fields named once, in one list that both binds the record
// as a read-only Python class and, where a dict is the shape users see, turns it into that dict.
//
//     const auto kIssueFields = fields(field("id", &DataIssue::id), field("closed_at", &DataIssue::closed_at));
//     bind_record<DataIssue>(m, "DataIssueRecord", "doc", kIssueFields);   // issue.id, issue.closed_at
//     record_dict(issue, kIssueFields);                                   // {"id": ..., "closed_at": ...}
//
// A field is a member pointer (bound with def_readonly) or a getter taking the record (a Python shape
// of its own: an enum by name, "" as None). Include <pybind11/stl.h> where a field is a container.
#pragma once

#include <pybind11/pybind11.h>

#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace keel::bindings {

//! One field of a record: its Python name, how to read it, and a docstring ("" for none).
template <typename Get>
struct RecordField {
    const char* name;
    Get get;
    const char* doc;
};

//! `field("id", &DataIssue::id)`, `field("dtype", [](const ColumnSpec& c) { ... }, "doc")`.
template <typename Get>
RecordField<Get> field(const char* name, Get get, const char* doc = "") {
    return {name, std::move(get), doc};
}

//! A record's fields, in the order Python lists them (`_fields`, dict keys, DataFrame columns).
template <typename... F>
auto fields(F... f) {
    return std::tuple<F...>(std::move(f)...);
}

//! The value of one field as a Python object.
template <typename T, typename Get>
pybind11::object field_value(const T& record, const RecordField<Get>& f) {
    decltype(auto) value = std::invoke(f.get, record);
    if constexpr (std::is_base_of_v<pybind11::handle, std::decay_t<decltype(value)>>)
        return pybind11::reinterpret_borrow<pybind11::object>(value);
    else
        return pybind11::cast(value, pybind11::return_value_policy::copy);
}

//! The record as a dict of its fields, for the shapes that stay dicts (report rows, stats).
template <typename T, typename Fields>
pybind11::dict record_dict(const T& record, const Fields& fs) {
    pybind11::dict out;
    std::apply([&](const auto&... f) { ((out[f.name] = field_value(record, f)), ...); }, fs);
    return out;
}

//! Records as a list of dicts (rows a DataFrame is made of).
template <typename Records, typename Fields>
pybind11::list dict_list(const Records& records, const Fields& fs) {
    pybind11::list out;
    for (const auto& r : records) out.append(record_dict(r, fs));
    return out;
}

//! The names of a record's fields, in order.
template <typename Fields>
std::vector<std::string> field_names(const Fields& fs) {
    return std::apply([](const auto&... f) { return std::vector<std::string>{f.name...}; }, fs);
}

//! InvalidArgument naming the keys of `given` that are not in `known` (what: "plugin limit").
void check_known_keys(const pybind11::dict& given, const std::vector<std::string>& known, const char* what);

//! Sets the fields of `record` (member pointers) that `given` names; a key naming no field is refused.
template <typename T, typename Fields>
void assign_fields(T& record, const pybind11::dict& given, const Fields& fs, const char* what) {
    check_known_keys(given, field_names(fs), what);
    std::apply(
        [&](const auto&... f) {
            auto assign = [&](const auto& field) {
                using Get = std::decay_t<decltype(field.get)>;
                if constexpr (std::is_member_object_pointer_v<Get>) {
                    using Member = std::decay_t<decltype(record.*(field.get))>;
                    if (given.contains(field.name)) record.*(field.get) = given[field.name].template cast<Member>();
                }
            };
            (assign(f), ...);
        },
        fs);
}

//! Makes records of a bound class readable as a read-only mapping of their `_fields` (record["id"],
//! keys(), get(), `in`, iteration, dict(record), ==), for records that used to cross as dicts.
void add_mapping_access(pybind11::handle cls);

//! Binds T as a read-only class named `name`: one attribute per field, `_fields` naming them in
//! order, and a copy constructor from a record so a Python class can subclass it.
template <typename T, typename... Options, typename Fields>
pybind11::class_<T, Options...> bind_record(pybind11::handle scope, const char* name, const char* doc,
                                            const Fields& fs) {
    pybind11::class_<T, Options...> cls(scope, name, doc);
    cls.def(pybind11::init<const T&>(), pybind11::arg("record"));
    pybind11::list names;
    std::apply(
        [&](const auto&... f) {
            auto define = [&](const auto& field) {
                using Get = std::decay_t<decltype(field.get)>;
                if constexpr (std::is_member_object_pointer_v<Get>) cls.def_readonly(field.name, field.get, field.doc);
                else cls.def_property_readonly(field.name, [g = field.get](const T& r) { return std::invoke(g, r); },
                                               field.doc);
                names.append(field.name);
            };
            (define(f), ...);
        },
        fs);
    cls.attr("_fields") = pybind11::tuple(names);
    return cls;
}

} // namespace keel::bindings
