// bindings/bind_endpoint.cpp: serving::Endpoint, what keel.Endpoint wraps. Requests go in as dicts
// and answers come out as dicts built here, so a request costs one C++ call. Native models run with
// the GIL released; models the core cannot run (scikit-learn, any Python object) are the host's:
// the Python loader given to the constructor returns a predict function, called with the GIL taken
// only around it.
#include "bindings.hpp"
#include "records.hpp"
#include "request_fields.hpp"

#include "keel/common/error.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/endpoint.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <array>
#include <set>

namespace py = pybind11;
using keel::serving::Endpoint;
using keel::serving::EndpointStats;

namespace keel::bindings {

namespace {

// A Python error raised by a host model or loader, carried through the core (which may print its
// what() without the GIL: a shadow's failure) and raised again, unchanged, to the Python caller.
struct HostModelError : std::runtime_error {
    py::error_already_set error;
    explicit HostModelError(py::error_already_set e)
        : std::runtime_error(py::str(e.value()).cast<std::string>()), error(std::move(e)) {}
};

// A Python object released with the GIL held, whichever thread drops the last reference.
struct HeldObject {
    py::object object;
    explicit HeldObject(py::object o) : object(std::move(o)) {}
    ~HeldObject() {
        if (!Py_IsInitialized()) {  // the interpreter is gone: leak rather than touch it
            object.release();
            return;
        }
        py::gil_scoped_acquire gil;
        object = py::object();
    }
};

// A variant's model run by Python: `predict(rows)` maps an (n, width) float64 array to n answers.
class PyVariantModel : public serving::VariantModel {
public:
    explicit PyVariantModel(py::object predict) : predict_(std::make_shared<HeldObject>(std::move(predict))) {}
    std::vector<double> predict(const double* rows, size_t n, size_t width) const override {
        py::gil_scoped_acquire gil;
        try {
            py::array_t<double> x({py::ssize_t(n), py::ssize_t(width)});
            std::copy(rows, rows + n * width, x.mutable_data());
            auto got = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(predict_->object(x));
            if (!got) throw py::error_already_set();
            std::vector<double> out(got.data(), got.data() + got.size());
            return out;
        } catch (py::error_already_set& e) {
            throw HostModelError(std::move(e));
        }
    }

private:
    std::shared_ptr<HeldObject> predict_;
};

serving::ModelLoader python_loader(py::object load) {
    if (load.is_none()) return {};
    auto held = std::make_shared<HeldObject>(std::move(load));
    return [held](const registry::ModelVersion& mv, const std::string& output) -> std::shared_ptr<const serving::VariantModel> {
        py::gil_scoped_acquire gil;
        try {
            return std::make_shared<PyVariantModel>(held->object(mv.ref(), output));
        } catch (py::error_already_set& e) {
            throw HostModelError(std::move(e));
        }
    };
}

// Runs `f` (GIL released when `release`), raising a host model's Python error as it was raised.
template <class F>
auto run(bool release, F&& f) {
    try {
        if (!release) return f();
        py::gil_scoped_release nogil;
        return f();
    } catch (HostModelError& e) {
        throw std::move(e.error);
    }
}

// The endpoint with what the binding remembers: which alias-move rejections were warned about.
struct PyEndpoint {
    std::unique_ptr<Endpoint> ep;
    std::set<std::string> warned;

    // A RuntimeWarning for each alias move newly not followed (once; again if it changes).
    void warn_rejected() {
        auto rejected = ep->stats().rejected;
        std::set<std::string> now;
        for (const auto& [variant, why] : rejected) {
            std::string text = variant.empty() ? fmt::format("endpoint '{}': {}", ep->name(), why)
                                               : fmt::format("endpoint '{}', variant '{}': {}", ep->name(), variant, why);
            if (!warned.count(text) && PyErr_WarnEx(PyExc_RuntimeWarning, text.c_str(), 2) < 0)
                throw py::error_already_set();
            now.insert(std::move(text));
        }
        warned = std::move(now);
    }
    void after_call() {
        uint64_t seen = ep->rejections();
        if (seen != rejections_seen) {
            rejections_seen = seen;
            warn_rejected();
        }
    }
    uint64_t rejections_seen = 0;
};

// The keys of an answer dict, made once (never destroyed: they would outlive the interpreter).
enum Key { Prediction, Variant, Model, Version, Fallback, Missing, Stale, Keys };
const std::array<py::object, Keys>& answer_keys() {
    static const auto* keys = new std::array<py::object, Keys>{
        py::str("prediction"), py::str("variant"), py::str("model"), py::str("version"),
        py::str("fallback"), py::str("missing"), py::str("stale")};
    return *keys;
}

// dict[key] = value, with no new key object per call.
void put(py::dict& d, Key key, const py::object& value) {
    if (PyDict_SetItem(d.ptr(), answer_keys()[key].ptr(), value.ptr()) < 0) throw py::error_already_set();
}

py::list names(const std::vector<std::string>& v) {
    py::list out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = py::str(v[i]);
    return out;
}


// The top-k items of each answer of a batch (None for answers of variants that serve a score).
py::list items_column(const Endpoint& ep, const Endpoint::BatchAnswer& b) {
    py::list out(b.items.size());
    for (size_t i = 0; i < b.items.size(); ++i) {
        const bool items = ep.serves_items(b.variants[size_t(b.decisions[i].variant)].variant);
        out[i] = items ? py::object(py::cast(b.items[i])) : py::object(py::none());
    }
    return out;
}

// The endpoint's own counters, beside the router's (router_stats_dict) in Endpoint.stats().
const auto kEndpointStatsFields = fields(
    field("shadow_errors", &EndpointStats::shadow_errors), field("last_shadow_error", &EndpointStats::last_shadow_error),
    field("revision", &EndpointStats::revision), field("issues", &EndpointStats::issues),
    field("missing", &EndpointStats::missing), field("stale", &EndpointStats::stale),
    field("refused", &EndpointStats::refused),
    field("rejected_alias_moves", [](const EndpointStats& s) {
        py::dict rejected;
        for (const auto& [variant, why] : s.rejected) rejected[py::str(variant)] = why;
        return rejected;
    }),
    field("log", [](const EndpointStats& s) { return log_stats_dict(s.log); }));

} // namespace

void bind_endpoint(py::module_& m) {
    py::class_<PyEndpoint, std::shared_ptr<PyEndpoint>>(m, "Endpoint")
        .def(py::init([](std::shared_ptr<storage::Workspace> ws, const std::string& name, double refresh_interval,
                         py::object load_model) {
                 if (!(refresh_interval >= 0))
                     throw_error(ErrorKind::InvalidArgument,
                                 "refresh_interval must be >= 0 seconds (0: look for new online snapshots on every "
                                 "request), got {}", refresh_interval);
                 serving::EndpointOptions options;
                 options.refresh_interval = std::chrono::milliseconds(int64_t(refresh_interval * 1000));
                 options.load_model = python_loader(std::move(load_model));
                 auto out = std::make_shared<PyEndpoint>();
                 // The GIL is kept: the loader runs Python, and nothing else can reach this endpoint yet.
                 out->ep = run(false, [&] { return std::make_unique<Endpoint>(std::move(ws), name, std::move(options)); });
                 out->after_call();
                 return out;
             }),
             py::arg("ws"), py::arg("name"), py::arg("refresh_interval") = 0.5, py::arg("load_model") = py::none(),
             "Opens the saved endpoint `name`. `load_model(ref, output)` returns a function mapping an (n, width) "
             "array of model inputs to n answers for a variant the core cannot run (None: native models only).")
        .def_property_readonly("name", [](const PyEndpoint& e) { return e.ep->name(); })
        .def_property_readonly("revision", [](const PyEndpoint& e) { return e.ep->revision(); })
        .def_property_readonly("key", [](const PyEndpoint& e) { return e.ep->key(); })
        .def_property_readonly("native", [](const PyEndpoint& e) { return e.ep->native(); },
                               "True when every variant predicts in C++.")
        .def_property_readonly("router", [](const PyEndpoint& e) { return e.ep->router(); })
        .def("definition", [](const PyEndpoint& e) { return e.ep->definition(); })
        .def("variants", [](const PyEndpoint& e) {
            py::list out;
            for (const auto& v : e.ep->variants()) out.append(py::make_tuple(v.variant, v.model, v.version));
            return out;
        }, "(variant, model version served, version number) in definition order.")
        .def("predict", [](PyEndpoint& e, py::dict request) {
            ThreadRequest guard;
            Request& r = guard.r;
            r.parse(request);
            auto a = run(true, [&] { return e.ep->predict(r.fields); });
            e.after_call();
            py::dict out;
            put(out, Prediction, py::float_(a.prediction));
            put(out, Variant, py::str(a.variant));
            put(out, Model, py::str(a.model));
            put(out, Version, py::int_(a.version));
            put(out, Fallback, py::str(a.fallback));
            put(out, Missing, names(a.missing));
            put(out, Stale, names(a.stale));
            if (e.ep->serves_items(a.variant)) out["items"] = a.items;  // a prediction table of top-k items
            return out;
        }, py::arg("request"))
        .def("predict_batch", [](PyEndpoint& e, py::list requests, bool as_columns) {
            const size_t n = requests.size();
            std::vector<Request> reqs(n);
            std::vector<std::span<const plugins::Field>> spans(n);
            for (size_t i = 0; i < n; ++i) {
                py::handle item = PyList_GET_ITEM(requests.ptr(), py::ssize_t(i));  // borrowed: the list holds it
                if (!PyDict_Check(item.ptr()))
                    throw_error(ErrorKind::InvalidArgument, "request {} must be a dict, got {}", i,
                                py::str(py::type::of(item)).cast<std::string>());
                reqs[i].parse(py::reinterpret_borrow<py::dict>(item));
                spans[i] = reqs[i].fields;
            }
            auto b = run(true, [&] { return e.ep->predict_batch(spans); });
            e.after_call();
            std::vector<py::object> variant, model, version;  // one object per variant, shared by its rows
            for (const auto& v : b.variants) {
                variant.push_back(py::str(v.variant));
                model.push_back(py::str(v.model));
                version.push_back(py::int_(v.version));
            }
            std::vector<py::object> fallbacks;
            for (int f = 0; f <= int(plugins::Fallback::Unavailable); ++f)
                fallbacks.push_back(py::str(std::string(plugins::fallback_name(plugins::Fallback(f)))));
            auto answer = [&](size_t i, Key key) -> py::object {
                const auto& d = b.decisions[i];
                switch (key) {
                case Prediction: return py::float_(b.predictions[i]);
                case Variant: return variant[size_t(d.variant)];
                case Model: return model[size_t(d.variant)];
                case Version: return version[size_t(d.variant)];
                case Fallback: return fallbacks[size_t(d.fallback)];
                case Missing: return names(b.missing[i]);
                default: return names(b.stale[i]);
                }
            };
            if (as_columns) {
                py::dict out;
                for (int k = 0; k < Keys; ++k) {
                    py::list column(n);
                    for (size_t i = 0; i < n; ++i) PyList_SET_ITEM(column.ptr(), i, answer(i, Key(k)).release().ptr());
                    put(out, Key(k), column);
                }
                if (!b.items.empty()) out["items"] = items_column(*e.ep, b);
                return py::object(out);
            }
            py::list out(n);
            for (size_t i = 0; i < n; ++i) {
                py::dict row;
                for (int k = 0; k < Keys; ++k) put(row, Key(k), answer(i, Key(k)));
                if (!b.items.empty() && e.ep->serves_items(b.variants[size_t(b.decisions[i].variant)].variant))
                    row["items"] = b.items[i];
                PyList_SET_ITEM(out.ptr(), i, row.release().ptr());
            }
            return py::object(out);
        }, py::arg("requests"), py::arg("as_columns") = false,
           "A list of request dicts in one call: a dict of columns (as_columns) or a list of answer dicts.")
        .def("refresh", [](PyEndpoint& e) {
            run(true, [&] { e.ep->refresh(); });
            e.after_call();
        })
        .def("set_weights", [](PyEndpoint& e, const std::vector<std::pair<std::string, double>>& weights) {
            return run(true, [&] { return e.ep->set_weights(weights); });
        }, py::arg("weights"))
        .def("stats", [](PyEndpoint& e) {
            auto s = run(true, [&] { return e.ep->stats(); });
            py::dict d = router_stats_dict(s.router);
            d.attr("update")(record_dict(s, kEndpointStatsFields));
            return d;
        }, "The router's counters with the endpoint's: shadow_errors, last_shadow_error, revision, issues, missing, "
           "stale, refused, rejected_alias_moves and log (the assignment log's).")
        .def("flush", [](PyEndpoint& e) { run(true, [&] { e.ep->log().flush(); }); },
             "Writes the buffered assignments now.")
        .def("close", [](PyEndpoint& e) { run(true, [&] { e.ep->log().close(); }); },
             "Closes the assignment log (later answers are written at once).");
}

} // namespace keel::bindings
