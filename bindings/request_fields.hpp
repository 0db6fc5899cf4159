// bindings/request_fields.hpp
#pragma once

#include "keel/plugins/router.hpp"

#include <pybind11/pybind11.h>

#include <string>
#include <vector>

namespace keel::bindings {

//! One field of a request dict for routing and serving: the key and str values as UTF-8 views
//! borrowed from the dict's objects (the caller keeps them alive for the call), bools, ints and
//! floats by value, numpy scalars and other number-likes unwrapped, anything else (and ints beyond
//! int64) as its text in `text`. The caller reserves `text` for the dict's size beforehand, so the
//! views into it never move.
plugins::Field request_field(PyObject* key, PyObject* value, std::vector<std::string>& text);

// A request dict as fields that stay valid with the GIL released: the keys and values are held by
// `keep` (another thread may change the dict meanwhile). Storage is reused per thread.
struct Request {
    std::vector<plugins::Field> fields;
    std::vector<pybind11::object> keep;
    std::vector<std::string> text;  // values that are neither str nor number

    void parse(const pybind11::dict& d) {
        fields.clear();
        keep.clear();
        text.clear();
        text.reserve(d.size());
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(d.ptr(), &pos, &key, &value)) {
            keep.push_back(pybind11::reinterpret_borrow<pybind11::object>(key));
            keep.push_back(pybind11::reinterpret_borrow<pybind11::object>(value));
            fields.push_back(request_field(key, value, text));
        }
    }
};

// The calling thread's Request, emptied again (references dropped while the GIL is held) when the
// call ends, so no Python object outlives the call in a thread_local.
struct ThreadRequest {
    Request& r;
    ThreadRequest() : r(get()) {}
    ~ThreadRequest() { r.keep.clear(); }
    static Request& get() {
        thread_local Request r;
        return r;
    }
};

} // namespace keel::bindings
