// bindings/bind_inference.cpp
#include "bindings.hpp"

#include "arrow_input.hpp"

#include "keel/common/error.hpp"
#include "keel/inference/column_rows.hpp"
#include "keel/inference/predictor.hpp"
#include "keel/inference/record_keys.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

namespace py = pybind11;
using keel::inference::Predictor;
using keel::inference::Record;
using keel::inference::RecordValue;

namespace keel::bindings {

namespace {

// A dict of str -> numpy array / list of str / str / int / float becomes a model record.
Record record_from_dict(const py::dict& d) {
    Record r;
    for (auto [k, v] : d) {
        auto key = py::cast<std::string>(k);
        if (py::isinstance<py::str>(v)) {
            r.emplace(key, RecordValue::of_string(py::cast<std::string>(v)));
        } else if (py::isinstance<py::bool_>(v) || py::isinstance<py::int_>(v)) {
            r.emplace(key, RecordValue::of_ints({py::cast<int64_t>(v)}));
        } else if (py::isinstance<py::float_>(v)) {
            r.emplace(key, RecordValue::of_reals({py::cast<double>(v)}));
        } else if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
            r.emplace(key, RecordValue::of_strings(py::cast<std::vector<std::string>>(v)));
        } else if (py::isinstance<py::array>(v)) {
            auto a = py::cast<py::array>(v);
            char kind = a.dtype().kind();
            if (kind == 'i' || kind == 'u' || kind == 'b') {
                auto c = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
                r.emplace(key, RecordValue::of_ints(std::vector<int64_t>(c.data(), c.data() + c.size())));
            } else if (kind == 'f') {
                auto c = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
                r.emplace(key, RecordValue::of_reals(std::vector<double>(c.data(), c.data() + c.size())));
            } else {
                throw_error(ErrorKind::InvalidArgument, "record key '{}': arrays must be numeric, not dtype kind '{}'",
                            key, kind);
            }
        } else {
            throw_error(ErrorKind::InvalidArgument, "record key '{}': unsupported value type {}", key,
                        py::cast<std::string>(py::str(py::type::of(v))));
        }
    }
    return r;
}

py::dict record_to_dict(const Record& r) {
    py::dict d;
    for (const auto& [k, v] : r) {
        switch (v.type) {
        case RecordValue::Type::Int: d[py::str(k)] = py::array_t<int64_t>(v.ints.size(), v.ints.data()); break;
        case RecordValue::Type::Real: d[py::str(k)] = py::array_t<double>(v.reals.size(), v.reals.data()); break;
        case RecordValue::Type::Strings: d[py::str(k)] = py::cast(v.strings); break;
        }
    }
    return d;
}

std::string_view task_name(keel::inference::Task t) {
    switch (t) {
    case keel::inference::Task::Regression: return "regression";
    case keel::inference::Task::Classification: return "classification";
    case keel::inference::Task::Factorization: return "factorization";
    }
    return "?";
}

using PredictorPtr = std::shared_ptr<Predictor>;

// Rows as a C-contiguous float64 or float32 array, read in place; anything else is converted once.
py::array predict(const Predictor& p, const py::array& x, int threads, bool raw) {
    size_t width = raw ? p.num_raw_outputs() : p.num_outputs();
    size_t nf = p.num_features();
    if (x.ndim() != 1 && x.ndim() != 2)
        throw_error(ErrorKind::InvalidArgument, "X has {} dimensions: pass one row (1-D) or rows (2-D)", x.ndim());
    size_t n = x.ndim() == 1 ? 1 : static_cast<size_t>(x.shape(0));
    size_t cols = static_cast<size_t>(x.shape(x.ndim() - 1));
    if (cols != nf)
        throw_error(ErrorKind::InvalidArgument, "X has {} columns but the model reads {} features", cols, nf);
    std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(width)};
    py::array_t<double> out(shape);
    double* o = out.mutable_data();
    bool contiguous = (x.flags() & py::array::c_style) != 0;
    if (contiguous && x.dtype().is(py::dtype::of<float>())) {
        const float* data = static_cast<const float*>(x.data());
        py::gil_scoped_release release;
        p.predict(data, n, o, threads, raw);
        return std::move(out);
    }
    py::array_t<double, py::array::c_style | py::array::forcecast> xd;
    if (contiguous && x.dtype().is(py::dtype::of<double>())) xd = py::reinterpret_borrow<py::array_t<double>>(x);
    else xd = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(x);
    if (!xd) throw py::error_already_set();
    const double* data = xd.data();
    py::gil_scoped_release release;
    if (n == 1) p.predict_row(data, o, raw);
    else p.predict(data, n, o, threads, raw);
    return std::move(out);
}

// Arrow data (a pyarrow Table or RecordBatch) read by column name in signature order, with no copy
// through another library's frames; the rows go to the predictor without the GIL.
py::array predict_arrow(const Predictor& p, const py::object& data, int threads, bool raw) {
    ImportedBatch batch = import_arrow_object(data);
    const size_t width = raw ? p.num_raw_outputs() : p.num_outputs();
    const size_t n = batch.rows();
    py::array_t<double> out(std::vector<py::ssize_t>{static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(width)});
    double* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        const std::vector<double> rows = keel::inference::rows_from_columns(p.signature(), batch);
        if (n > 0) p.predict(rows.data(), n, o, threads, raw);
    }
    return std::move(out);
}

} // namespace

// keel._core.model_keys: the model record's keys (record_keys.hpp) as Python constants, so the
// Python importers write exactly the keys the core reads.
void bind_model_keys(py::module_& m) {
    namespace k = keel::inference::keys;
    auto keys = m.def_submodule("model_keys", "Keys of a native model record (core/include/keel/inference/"
                                              "record_keys.hpp); templates hold {} placeholders for str.format.");
    const std::pair<const char*, std::string_view> all[] = {
        {"TASK", k::kTask}, {"MODEL_KIND", k::kModelKind}, {"FEATURE_NAMES", k::kFeatureNames},
        {"FEATURE_DTYPES", k::kFeatureDtypes}, {"METADATA", k::kMetadata}, {"OUTPUT_TRANSFORM", k::kOutputTransform},
        {"OUTPUT_SIGMOID_SCALE", k::kOutputSigmoidScale}, {"PRE_COUNT", k::kPreCount},
        {"PRE_STAGE_BLOCKS", k::kPreStageBlocks}, {"PRE_BLOCK", k::kPreBlock}, {"BLOCK_KIND", k::kBlockKind},
        {"BLOCK_COLUMNS", k::kBlockColumns}, {"BLOCK_MEAN", k::kBlockMean}, {"BLOCK_SCALE", k::kBlockScale},
        {"BLOCK_CATEGORIES", k::kBlockCategories}, {"BLOCK_OFFSETS", k::kBlockOffsets}, {"BLOCK_DROP", k::kBlockDrop},
        {"BLOCK_HANDLE_UNKNOWN", k::kBlockHandleUnknown}, {"BLOCK_UNKNOWN_VALUE", k::kBlockUnknownValue},
        {"BLOCK_MISSING_VALUE", k::kBlockMissingValue}, {"LINEAR_COEF", k::kLinearCoef},
        {"LINEAR_INTERCEPT", k::kLinearIntercept}, {"MLP_LAYERS", k::kMlpLayers}, {"MLP_ACTIVATION", k::kMlpActivation},
        {"MLP_LAYER_WEIGHTS", k::kMlpLayerWeights}, {"MLP_LAYER_BIAS", k::kMlpLayerBias}, {"TREE_N_RAW", k::kTreeNRaw},
        {"TREE_LEAF_WIDTH", k::kTreeLeafWidth}, {"TREE_BASE", k::kTreeBase}, {"TREE_SCALE", k::kTreeScale},
        {"TREE_DIVISOR", k::kTreeDivisor}, {"TREE_COMPARE", k::kTreeCompare}, {"TREE_OFFSETS", k::kTreeOffsets},
        {"TREE_OUTPUT", k::kTreeOutput}, {"NODE_FEATURE", k::kNodeFeature}, {"NODE_THRESHOLD", k::kNodeThreshold},
        {"NODE_LEFT", k::kNodeLeft}, {"NODE_RIGHT", k::kNodeRight}, {"NODE_VALUE", k::kNodeValue},
        {"NODE_DEFAULT_LEFT", k::kNodeDefaultLeft}, {"NODE_MISSING", k::kNodeMissing},
        {"NODE_CATEGORY", k::kNodeCategory}, {"CAT_OFFSETS", k::kCatOffsets}, {"CAT_WORDS", k::kCatWords},
        {"MF_DIM", k::kMfDim}, {"MF_USER_FACTORS", k::kMfUserFactors}, {"MF_ITEM_FACTORS", k::kMfItemFactors},
        {"MF_USER_BIAS", k::kMfUserBias}, {"MF_ITEM_BIAS", k::kMfItemBias}, {"MF_GLOBAL_BIAS", k::kMfGlobalBias},
        {"META_SOURCE", k::kMetaSource}, {"META_CLASSES", k::kMetaClasses}, {"META_VOCABULARIES", k::kMetaVocabularies},
        {"META_USER_IDS", k::kMetaUserIds}, {"META_ITEM_IDS", k::kMetaItemIds},
    };
    for (const auto& [name, value] : all) keys.attr(name) = py::str(value.data(), value.size());
}

void bind_inference(py::module_& m) {
    bind_model_keys(m);
    py::class_<Predictor, PredictorPtr>(m, "NativePredictor")
        .def(py::init([](const py::dict& record) { return std::make_shared<Predictor>(record_from_dict(record)); }),
             py::arg("record"))
        .def_static("from_bytes",
                    [](py::bytes data) {
                        std::string_view view = data;
                        py::gil_scoped_release release;
                        return std::const_pointer_cast<Predictor>(keel::inference::load_predictor(view));
                    })
        .def("to_bytes",
             [](const Predictor& p) {
                 std::string bytes;
                 {
                     py::gil_scoped_release release;
                     bytes = p.to_bytes();
                 }
                 return py::bytes(bytes);
             })
        .def("record", [](const Predictor& p) { return record_to_dict(p.record()); })
        .def_property_readonly("num_features", &Predictor::num_features)
        .def_property_readonly("num_outputs", &Predictor::num_outputs)
        .def_property_readonly("num_raw_outputs", &Predictor::num_raw_outputs)
        .def_property_readonly("task", [](const Predictor& p) { return std::string(task_name(p.task())); })
        .def_property_readonly("kind", &Predictor::kind)
        .def_property_readonly("metadata", &Predictor::metadata)
        .def_property_readonly("signature",
                               [](const Predictor& p) {
                                   std::vector<std::pair<std::string, std::string>> s;
                                   for (const auto& f : p.signature()) s.emplace_back(f.name, f.dtype);
                                   return s;
                               })
        .def("predict", &predict, py::arg("x"), py::arg("threads") = 0, py::arg("raw") = false)
        .def("predict_arrow", &predict_arrow, py::arg("data"), py::arg("threads") = 0, py::arg("raw") = false,
             "Predictions for Arrow data (a pyarrow Table or RecordBatch): each input read from the column of its "
             "name (numbers and bools; nulls as NaN).")
        .def("score_pairs",
             [](const Predictor& p, py::array_t<int64_t, py::array::c_style | py::array::forcecast> users,
                py::array_t<int64_t, py::array::c_style | py::array::forcecast> items) {
                 if (users.size() != items.size())
                     throw_error(ErrorKind::InvalidArgument, "{} users but {} items: pass one item per user",
                                 users.size(), items.size());
                 py::array_t<double> out(users.size());
                 double* o = out.mutable_data();
                 {
                     py::gil_scoped_release release;
                     p.score_pairs(users.data(), items.data(), static_cast<size_t>(users.size()), o);
                 }
                 return out;
             })
        .def("recommend",
             [](const Predictor& p, py::array_t<int64_t, py::array::c_style | py::array::forcecast> users, size_t k,
                std::optional<py::array_t<int64_t, py::array::c_style | py::array::forcecast>> indptr,
                std::optional<py::array_t<int64_t, py::array::c_style | py::array::forcecast>> indices, int threads) {
                 const int64_t* ip = nullptr;
                 const int64_t* ix = nullptr;
                 if (indptr && indices) {
                     if (static_cast<size_t>(indptr->size()) != static_cast<size_t>(users.size()) + 1)
                         throw_error(ErrorKind::InvalidArgument, "exclude indptr has {} entries, expected {}",
                                     indptr->size(), users.size() + 1);
                     ip = indptr->data();
                     ix = indices->data();
                     auto last = ip[users.size()];
                     if (last < 0 || last > indices->size())
                         throw_error(ErrorKind::InvalidArgument, "exclude indptr ends at {} past {} indices", last,
                                     indices->size());
                 }
                 keel::inference::Recommendations rec;
                 {
                     py::gil_scoped_release release;
                     rec = p.recommend(users.data(), static_cast<size_t>(users.size()), k, ip, ix, threads);
                 }
                 std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(users.size()), static_cast<py::ssize_t>(rec.k)};
                 py::array_t<int64_t> items(shape);
                 py::array_t<double> scores(shape);
                 std::copy(rec.items.begin(), rec.items.end(), items.mutable_data());
                 std::copy(rec.scores.begin(), rec.scores.end(), scores.mutable_data());
                 return py::make_tuple(items, scores);
             },
             py::arg("users"), py::arg("k"), py::arg("indptr") = py::none(), py::arg("indices") = py::none(),
             py::arg("threads") = 0);
}

} // namespace keel::bindings
