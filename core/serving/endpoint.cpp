// core/serving/endpoint.cpp
#include "keel/serving/endpoint.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/features/online.hpp"
#include "keel/features/store.hpp"
#include "keel/inference/predictor.hpp"
#include "keel/plugins/quality_store.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/definition_check.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/serving/prediction_tables.hpp"
#include "keel/serving/request_path.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <set>

namespace keel::serving {

namespace {

// Where a prediction table's values sit in its variant's input row: the score first (when the table
// has one), then the top-k item ids.
struct TableShape {
    bool score = false;
    int items = 0;
};

// A prediction table's "model": the looked-up score is the answer (NaN for a table of items only).
struct TableLookup final : VariantModel {
    bool score = false;
    std::vector<double> predict(const double* rows, size_t n, size_t width) const override {
        std::vector<double> out(n, std::numeric_limits<double>::quiet_NaN());
        if (score)
            for (size_t r = 0; r < n; ++r) out[r] = rows[r * width];
        return out;
    }
};

// The model of a variant whose model could not be loaded: never called, the router sends its
// requests to the default variant.
struct Unloaded final : VariantModel {
    std::vector<double> predict(const double*, size_t, size_t) const override {
        throw_error(ErrorKind::Internal, "a variant without a model was asked to predict");
    }
};

TableShape table_shape(const registry::ModelVersion& mv) {
    TableShape shape;
    if (mv.flavour != kPredictionsFlavour) return shape;
    for (const auto& name : model_input_names(mv)) {
        if (name.ends_with(":prediction")) shape.score = true;
        else ++shape.items;
    }
    return shape;
}

// The item ids of one row (ranks without an item, NaN, are left out).
std::vector<int64_t> items_of(const TableShape& shape, const double* row) {
    std::vector<int64_t> out;
    out.reserve(size_t(shape.items));
    for (int k = 0; k < shape.items; ++k)
        if (const double id = row[(shape.score ? 1 : 0) + k]; !std::isnan(id)) out.push_back(int64_t(id));
    return out;
}

} // namespace

struct Endpoint::State {
    int64_t revision = 0;
    EndpointDefinition definition;
    std::vector<registry::ModelVersion> versions;  // per variant
    // Per variant, exactly one of the two: the core's predictor, or the host's model.
    std::vector<std::shared_ptr<const inference::Predictor>> natives;
    std::vector<std::shared_ptr<const VariantModel>> hosted;
    std::shared_ptr<plugins::Router> router;
    std::shared_ptr<features::OnlineReader> reader;  // null when the endpoint reads no online feature
    std::vector<TableShape> tables;  // per variant: what a prediction table's row holds (zeros: a model)
    std::shared_ptr<RequestPath> path;
    std::string key;  // the entity key field: the sticky key, logged per assignment
    std::vector<std::string> issues;  // variants with an open data issue upstream (sorted)
    std::string removed;  // set when the endpoint was removed: why new requests are NotFound
};

namespace {

// Variant i of `s` has no model (it could not be loaded): the router sends its requests elsewhere.
bool unloaded(const Endpoint::State& s, size_t i) {
    return i < s.hosted.size() && dynamic_cast<const Unloaded*>(s.hosted[i].get()) != nullptr;
}

// The variant served when routing fails: default= by name, else the first.
int default_index_of(const EndpointDefinition& d) {
    for (size_t i = 0; i < d.variants.size(); ++i)
        if (d.variants[i].name == d.default_variant) return int(i);
    return 0;
}

// A removed endpoint answers no request (NotFound, which keel-server sends as 404).
void check_live(const Endpoint::State& s) {
    if (!s.removed.empty()) throw Error(ErrorKind::NotFound, s.removed);
}

int64_t steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

//! A request field's value as the assignment log stores it: as Python's str() writes it, so a row
//! reads the same whichever host served it ("" when the request lacks the field).
std::string field_text(std::span<const plugins::Field> request, std::string_view name) {
    for (const auto& f : request) {
        if (f.name != name) continue;
        return std::visit([](const auto& v) -> std::string {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>) return "None";
            else if constexpr (std::is_same_v<T, bool>) return v ? "True" : "False";
            else if constexpr (std::is_same_v<T, std::string_view>) return std::string(v);
            else if constexpr (std::is_same_v<T, double>) {
                std::string text = fmt::format("{}", v);  // shortest round trip, like Python's repr
                if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
                return text;
            } else return fmt::format("{}", v);
        }, f.value);
    }
    return "";
}

//! One row of model inputs as the prediction log keeps it: {"name": value, ...}, NaN as null.
std::string inputs_json(const std::vector<std::string>& names, const double* row) {
    std::string out = "{";
    for (size_t i = 0; i < names.size(); ++i) {
        if (i) out += ',';
        out += '"';
        for (char c : names[i]) {
            if (c == '"' || c == '\\') out += '\\';
            if (static_cast<unsigned char>(c) < 0x20) fmt::format_to(std::back_inserter(out), "\\u{:04x}", int(c));
            else out += c;
        }
        out += "\":";
        if (std::isfinite(row[i])) fmt::format_to(std::back_inserter(out), "{}", row[i]);
        else out += "null";
    }
    return out + '}';
}

//! True for about `share` of the calls (log_inputs): a per-thread splitmix64 stream, no lock.
bool sampled(double share) {
    if (share <= 0) return false;
    if (share >= 1) return true;
    thread_local uint64_t state = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                                  uint64_t(reinterpret_cast<uintptr_t>(&state));
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return double(z >> 11) * 0x1.0p-53 < share;
}

int64_t micros_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
}

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
    return out;
}

//! Model inputs without a fresh value, by name.
void flagged(const InputPlan& plan, size_t variant, std::span<const InputState> states, std::vector<std::string>& missing,
             std::vector<std::string>& stale) {
    const auto& names = plan.names(variant);
    for (size_t j = 0; j < states.size(); ++j) {
        if (states[j] == InputState::Missing) missing.push_back(names[j]);
        else if (states[j] == InputState::Stale) stale.push_back(names[j]);
    }
}

void check_output(std::string_view endpoint, const EndpointVariant& v, const registry::ModelVersion& mv,
                  const inference::Predictor& p, std::string_view output) {
    bool classifier = p.task() == inference::Task::Classification;
    if (p.task() == inference::Task::Factorization)
        throw_error(ErrorKind::InvalidArgument,
                    "endpoint '{}', variant '{}': model {} is a factorization model, which ranks items and is not "
                    "served by endpoints: serve a classifier or a regressor",
                    endpoint, v.name, mv.ref());
    if ((output == "proba" && !classifier) || (output == "predict" && classifier))
        throw_error(ErrorKind::InvalidArgument,
                    "endpoint '{}', variant '{}': output='{}' but model {} is a {}: the core serves a classifier's "
                    "probability of its last class and a regressor's value; use output='auto'",
                    endpoint, v.name, output, mv.ref(), classifier ? "classifier" : "regressor");
}

//! `n` rows of variant `v`'s inputs -> n answers, natively or through the host's model.
void predict_rows(const Endpoint::State& s, size_t v, const double* rows, size_t n, double* out) {
    if (const auto& p = s.natives[v]) {
        const size_t k = p->num_outputs();
        const bool last = p->task() == inference::Task::Classification;
        if (n == 1) {
            thread_local std::vector<double> one;
            one.resize(k);
            p->predict_row(rows, one.data());
            out[0] = last ? one.back() : one.front();
            return;
        }
        std::vector<double> all(n * k);
        p->predict(rows, n, all.data());
        for (size_t r = 0; r < n; ++r) out[r] = all[r * k + (last ? k - 1 : 0)];
        return;
    }
    auto got = s.hosted[v]->predict(rows, n, s.path->plan().width(v));
    if (got.size() != n)
        throw_error(ErrorKind::Internal, "variant '{}': its model answered {} values for {} rows",
                    s.definition.variants[v].name, got.size(), n);
    std::copy(got.begin(), got.end(), out);
}

} // namespace

Endpoint::Endpoint(std::shared_ptr<storage::Workspace> ws, std::string name, AssignmentLogOptions log_options)
    : Endpoint(std::move(ws), std::move(name), EndpointOptions{.log = log_options}) {}

Endpoint::Endpoint(std::shared_ptr<storage::Workspace> ws, std::string name, EndpointOptions options)
    : ws_(std::move(ws)), name_(std::move(name)), options_(std::move(options)),
      features_(std::make_unique<features::FeatureStore>(ws_)), log_(ws_, name_, options_.log) {
    auto& db = ws_->db();
    token_ = db.change_token();
    generation_ = storage::read_generation(db);  // read before what it guards
    reload();
    next_snapshot_check_ = steady_ms() + options_.refresh_interval.count();
}

Endpoint::~Endpoint() = default;

std::shared_ptr<const Endpoint::State> Endpoint::current() const {
    std::lock_guard lock(mutex_);
    return state_;
}

std::vector<std::string> Endpoint::variants_with_issues(const State& s) const {
    plugins::QualityStore quality(*ws_);
    const auto& features = s.path->plan().spec().features;
    std::map<std::string, bool> view_has_issue;  // views read online -> an open issue upstream
    std::vector<std::string> out;
    for (size_t k = 0; k < s.versions.size(); ++k) {
        bool bad = !quality.issues_affecting(s.versions[k].lineage_ref()).empty();
        for (size_t i : s.path->plan().features_read(k)) {
            if (bad) break;
            std::string view = features[i].substr(0, features[i].find(':'));
            auto [it, fresh] = view_has_issue.try_emplace(view, false);
            if (fresh) it->second = !quality.issues_affecting("feature_view:" + view).empty();
            bad = it->second;
        }
        if (bad) out.push_back(s.definition.variants[k].name);
    }
    std::sort(out.begin(), out.end());
    return out;
}

void Endpoint::reload() {
    std::lock_guard reloading(reload_mutex_);
    EndpointStore store(*ws_);
    auto previous = current();
    EndpointRevision rev;
    try {
        rev = store.current(name_);
    } catch (const Error& e) {
        // Removed (EndpointStore::remove) while hosted: new requests are NotFound, not answered by
        // the revision loaded before, until it is saved again. Opening one fails as before.
        if (e.kind() != ErrorKind::NotFound || !previous) throw;
        auto next = std::make_shared<State>(*previous);
        next->removed = e.what();
        std::lock_guard lock(mutex_);
        state_ = std::move(next);
        return;
    }
    const bool same_revision = previous && previous->revision == rev.revision && previous->removed.empty();
    auto next = std::make_shared<State>();
    next->revision = rev.revision;
    next->definition = same_revision ? previous->definition : rev.definition;
    const auto& d = next->definition;
    registry::Registry registry(*ws_);
    next->versions = resolve_variants(*ws_, registry, d);
    auto plan_of = [&](const std::vector<registry::ModelVersion>& versions) {
        std::vector<ServedModel> models;
        for (const auto& mv : versions) models.push_back(served_model(mv));
        return plan_inputs(name_, d, models);
    };
    // An alias moved (below the API) onto a version the endpoint cannot feed: that variant keeps
    // serving its version, the others follow their moves.
    std::vector<std::pair<std::string, std::string>> rejected;
    if (same_revision)
        for (size_t i = 0; i < next->versions.size(); ++i) {
            if (next->versions[i].ref() == previous->versions[i].ref()) continue;
            auto trial = previous->versions;
            trial[i] = next->versions[i];
            try {
                plan_of(trial);
            } catch (const Error& e) {
                if (e.kind() != ErrorKind::InvalidArgument) throw;
                rejected.emplace_back(d.variants[i].name, fmt::format("{} moved to {}, not followed: {}",
                                                                      d.variants[i].model, next->versions[i].ref(),
                                                                      e.what()));
                next->versions[i] = previous->versions[i];
            }
        }
    bool same_models = same_revision;
    for (size_t i = 0; same_models && i < next->versions.size(); ++i)
        same_models = next->versions[i].ref() == previous->versions[i].ref();
    if (same_models) {
        auto issues = variants_with_issues(*previous);
        std::lock_guard lock(mutex_);
        set_rejected(std::move(rejected));
        if (issues != previous->issues) {
            previous->router->set_issues(issues);
            auto updated = std::make_shared<State>(*previous);
            updated->issues = std::move(issues);
            state_ = std::move(updated);
        }
        return;
    }
    const size_t nv = d.variants.size();
    next->natives.resize(nv);
    next->hosted.resize(nv);
    // The model of one variant: the core's predictor, the host's model, or a table lookup.
    auto load = [&](size_t i) {
        const auto& mv = next->versions[i];
        if (mv.flavour == kPredictionsFlavour) {  // values looked up online: nothing to load
            auto lookup = std::make_shared<TableLookup>();
            lookup->score = table_shape(mv).score;
            next->hosted[i] = std::move(lookup);
            return;
        }
        if (mv.flavour == "keel-native") {
            auto p = inference::load_predictor(registry.load_artifact(mv.ref()));
            try {
                check_output(name_, d.variants[i], mv, *p, d.output);
                next->natives[i] = std::move(p);
                return;
            } catch (const Error&) {
                if (!options_.load_model) throw;  // the host may serve what the core does not
            }
        } else if (!options_.load_model) {
            throw_error(ErrorKind::InvalidArgument,
                        "model {} is a '{}' model, which only a Python host can run; the core serves native models "
                        "(log a model keel.inference can convert)", mv.ref(), mv.flavour);
        }
        next->hosted[i] = options_.load_model(mv, d.output);
        if (!next->hosted[i]) throw_error(ErrorKind::InvalidArgument, "the host cannot serve model {}", mv.ref());
    };
    const int default_index = default_index_of(d);
    std::vector<std::string> unavailable;  // variants without a model: the default answers for them
    for (size_t i = 0; i < nv; ++i) {
        const auto& mv = next->versions[i];
        bool reused = false;
        for (size_t j = 0; previous && j < previous->versions.size() && !reused; ++j)
            if (previous->versions[j].ref() == mv.ref() && previous->definition.output == d.output &&
                !unloaded(*previous, j)) {
                next->natives[i] = previous->natives[j];
                next->hosted[i] = previous->hosted[j];
                reused = true;
            }
        if (reused) continue;
        try {
            load(i);
        } catch (const Error& e) {
            if (same_revision) {
                // An alias moved onto a version whose model cannot be loaded (a missing or corrupt
                // artifact): that variant keeps serving the version it served.
                rejected.emplace_back(d.variants[i].name,
                                      fmt::format("{} moved to {}, not followed: its model could not be loaded: {}",
                                                  d.variants[i].model, mv.ref(), e.what()));
                next->versions[i] = previous->versions[i];
                next->natives[i] = previous->natives[i];
                next->hosted[i] = previous->hosted[i];
                if (unloaded(*previous, i)) unavailable.push_back(d.variants[i].name);
                continue;
            }
            // The default variant answers for the others, so it must load (else the revision is not
            // served: a first open fails, a new one leaves the previous serving).
            if (int(i) == default_index)
                throw_error(e.kind(), "endpoint '{}', default variant '{}': {}", name_, d.variants[i].name, e.what());
            rejected.emplace_back(d.variants[i].name,
                                  fmt::format("its model {} could not be loaded, so the default variant '{}' answers "
                                              "its requests: {}", mv.ref(), d.variants[size_t(default_index)].name,
                                              e.what()));
            next->hosted[i] = std::make_shared<Unloaded>();
            unavailable.push_back(d.variants[i].name);
        }
    }
    auto plan = plan_of(next->versions);  // a new revision was checked when it was saved
    const auto& served_features = plan->spec().features;  // the definition's and the prediction tables'
    const std::string key = entity_key(*features_, d, served_features);
    for (const auto& mv : next->versions) next->tables.push_back(table_shape(mv));
    if (previous && previous->reader && previous->reader->features() == served_features)
        next->reader = previous->reader;
    else if (!served_features.empty())
        next->reader = features_->online_reader(served_features);
    if (same_revision) {  // an alias moved: same router (and counters)
        next->router = previous->router;
    } else {
        plugins::RouterConfig config;
        config.plugin = d.routing;
        for (const auto& v : d.variants) config.variants.push_back({v.name, v.weight});
        config.default_variant = d.default_variant;
        config.config = d.config.is_map() ? d.config : plugins::Value(plugins::Value::Map{});
        auto& options = std::get<plugins::Value::Map>(config.config.data);
        std::erase_if(options, [](const auto& e) { return e.first == "key"; });
        options.emplace_back("key", key);  // the sticky key is the entity key
        config.name = name_;
        next->router = std::make_shared<plugins::Router>(std::move(config));
        store.link_views(name_, d);  // also for revisions saved before endpoints recorded their views
    }
    next->router->set_unavailable(unavailable);
    std::vector<std::shared_ptr<const inference::Predictor>> predictors(next->natives);
    next->path = std::make_shared<RequestPath>(next->router, next->reader, key, std::move(plan), std::move(predictors));
    next->key = key;
    // The versions served now serve this endpoint in the lineage graph; the others stop.
    std::vector<std::string> served;
    for (const auto& mv : next->versions) served.push_back(mv.lineage_ref());
    store.link_serves(name_, served);
    next->issues = variants_with_issues(*next);
    next->router->set_issues(next->issues);
    std::lock_guard lock(mutex_);
    state_ = std::move(next);
    set_rejected(std::move(rejected));
}

void Endpoint::set_rejected(std::vector<std::pair<std::string, std::string>> rejected) {
    if (rejected == rejected_) return;
    rejected_ = std::move(rejected);
    rejections_.fetch_add(1, std::memory_order_relaxed);
}

void Endpoint::maybe_reload() {
    // What nobody announces is looked for every refresh_interval: online snapshots materialized in
    // another process, lineage edges that put a data issue upstream of a variant.
    int64_t now = steady_ms(), due = next_snapshot_check_.load(std::memory_order_relaxed);
    bool interval = now >= due &&
                    next_snapshot_check_.compare_exchange_strong(due, now + options_.refresh_interval.count());
    auto& db = ws_->db();
    // This handle's own changes are seen at once, other processes' within a millisecond, with no
    // file lock taken per request.
    uint64_t token = db.recent_change_token(std::chrono::milliseconds(1));
    bool moved = false;
    if (token_.exchange(token) != token) {
        int64_t generation = storage::read_generation(db);
        moved = generation_.exchange(generation) != generation;
    }
    if (moved || interval) {
        try {
            reload();
        } catch (const Error& e) {
            // A change that cannot be served (a new revision whose model cannot be loaded) never
            // turns answers into errors: what was served goes on, the failure is reported as a
            // rejection (stats, a warning in Python, the server's /readyz and /metrics), and the
            // change is tried again every refresh_interval until it loads or is replaced.
            const auto s = current();
            std::lock_guard lock(mutex_);
            set_rejected({{"", fmt::format("the endpoint's current definition could not be loaded, so revision {} "
                                           "is still served: {}", s->revision, e.what())}});
            next_snapshot_check_ = now + options_.refresh_interval.count();
        }
    }
    if (interval)
        if (auto s = current(); s->reader) s->reader->refresh();
}

void Endpoint::refresh() {
    auto& db = ws_->db();
    token_ = db.change_token();
    generation_ = storage::read_generation(db);
    reload();
    if (auto s = current(); s->reader) s->reader->refresh();
    next_snapshot_check_ = steady_ms() + options_.refresh_interval.count();
}

int64_t Endpoint::set_weights(const std::vector<std::pair<std::string, double>>& weights) {
    auto s = current();
    EndpointStore store(*ws_);
    store.current(name_);  // NotFound when removed: new weights do not bring it back
    auto rev = store.save(name_, s->definition.with_weights(weights));  // checked before it is saved
    s->router->set_weights(weights);
    std::lock_guard reloading(reload_mutex_);
    std::lock_guard lock(mutex_);
    if (state_->revision < rev.revision) {  // same models and router: only the definition moved
        auto next = std::make_shared<State>(*state_);
        next->revision = rev.revision;
        next->definition = rev.definition;
        state_ = std::move(next);
    }
    return state_->revision;
}

void Endpoint::run_shadows(const State& s, uint64_t bits, std::span<const plugins::Field> request, int64_t ts) {
    std::vector<Assignment> rows;
    for (size_t i = 0; i < s.versions.size(); ++i) {
        if (!(bits >> i & 1)) continue;
        Assignment row;
        std::vector<std::string> missing, stale;
        try {  // a shadow never reaches the answer: its failures are counted
            auto a = s.path->inputs(int(i), request);
            double prediction = a.prediction;
            flagged(s.path->plan(), i, a.states, missing, stale);
            if (!s.natives[i]) {
                std::vector<double> inputs(a.row.begin(), a.row.end());
                predict_rows(s, i, inputs.data(), 1, &prediction);
            }
            row.prediction = prediction;
        } catch (const std::exception& e) {
            shadow_errors_.fetch_add(1, std::memory_order_relaxed);
            std::lock_guard lock(mutex_);
            last_shadow_error_ = fmt::format("{}: {}", s.definition.variants[i].name, e.what());
            continue;
        }
        row.ts = ts;
        row.key = field_text(request, s.key);
        row.tenant = field_text(request, s.definition.tenant_field);
        row.variant = s.definition.variants[i].name;
        row.model = s.versions[i].ref();
        row.version = s.versions[i].version;
        row.shadow = true;
        row.revision = s.revision;
        row.missing = joined(missing);
        row.stale = joined(stale);
        rows.push_back(std::move(row));
    }
    if (!rows.empty()) log_.append(std::move(rows));
}

Endpoint::Answer Endpoint::predict(std::span<const plugins::Field> request) {
    const auto started = std::chrono::steady_clock::now();
    maybe_reload();
    auto s = current();
    check_live(*s);
    RequestPath::Answer a;
    try {
        a = s->path->native() ? s->path->serve(request) : s->path->prepare(request);
    } catch (const Error& e) {
        if (e.kind() == ErrorKind::InvalidArgument) refused_.fetch_add(1, std::memory_order_relaxed);
        throw;
    }
    size_t index = size_t(a.decision.variant);
    Answer out;
    flagged(s->path->plan(), index, a.states, out.missing, out.stale);
    if (s->path->native()) out.prediction = a.prediction;
    else predict_rows(*s, index, a.row.data(), 1, &out.prediction);  // the row outlives no other request path call
    if (s->tables[index].items) out.items = items_of(s->tables[index], a.row.data());
    out.variant = s->definition.variants[index].name;
    out.model = s->versions[index].ref();
    out.version = s->versions[index].version;
    out.fallback = std::string(plugins::fallback_name(a.decision.fallback));
    if (!out.missing.empty()) missing_.fetch_add(1, std::memory_order_relaxed);
    if (!out.stale.empty()) stale_.fetch_add(1, std::memory_order_relaxed);
    Assignment row;
    row.ts = now_ms();
    row.key = field_text(request, s->key);
    row.tenant = field_text(request, s->definition.tenant_field);
    row.variant = out.variant;
    row.model = out.model;
    row.version = out.version;
    row.fallback = out.fallback;
    row.prediction = out.prediction;
    row.revision = s->revision;
    row.missing = joined(out.missing);
    row.stale = joined(out.stale);
    if (sampled(s->definition.log_inputs)) row.inputs = inputs_json(s->path->plan().names(index), a.row.data());
    row.latency_us = micros_since(started);
    const int64_t ts = row.ts;
    log_.append(std::move(row));
    if (a.decision.shadows) run_shadows(*s, a.decision.shadows, request, ts);
    return out;
}

Endpoint::BatchAnswer Endpoint::predict_batch(std::span<const std::span<const plugins::Field>> requests) {
    const auto started = std::chrono::steady_clock::now();
    maybe_reload();
    auto s = current();
    check_live(*s);
    const size_t n = requests.size();
    const auto& path = *s->path;
    RequestPath::Batch b;
    try {
        std::vector<int64_t> ids(n, 0);
        if (s->reader)
            for (size_t i = 0; i < n; ++i) {
                try {
                    ids[i] = path.entity_id(requests[i]);
                } catch (const Error& e) {
                    throw Error(e.kind(), fmt::format("request {}: {}", i, e.what()));
                }
            }
        b = path.serve_many(requests, ids.data(), true);
    } catch (const Error& e) {
        if (e.kind() == ErrorKind::InvalidArgument) refused_.fetch_add(int64_t(n), std::memory_order_relaxed);
        throw;
    }
    BatchAnswer out;
    const size_t nv = s->versions.size();
    for (size_t v = 0; v < nv; ++v)
        out.variants.push_back({s->definition.variants[v].name, s->versions[v].ref(), s->versions[v].version});
    if (b.predictions.empty()) {  // some variant is the host's: one call per variant for its rows
        b.predictions.assign(n, 0.0);
        std::vector<double> answers;
        for (size_t v = 0; v < nv; ++v) {
            const size_t m = b.rows_of[v].size();
            if (!m) continue;
            answers.resize(m);
            predict_rows(*s, v, b.inputs[v].data(), m, answers.data());
            for (size_t k = 0; k < m; ++k) b.predictions[b.rows_of[v][k]] = answers[k];
        }
    }
    out.missing.resize(n);
    out.stale.resize(n);
    int64_t with_missing = 0, with_stale = 0;
    for (size_t v = 0; v < nv; ++v) {
        const size_t w = path.plan().width(v);
        for (size_t k = 0; k < b.rows_of[v].size(); ++k) {
            const size_t i = b.rows_of[v][k];
            flagged(path.plan(), v, std::span<const InputState>(b.states[v].data() + k * w, w), out.missing[i],
                    out.stale[i]);
            with_missing += !out.missing[i].empty();
            with_stale += !out.stale[i].empty();
        }
    }
    missing_.fetch_add(with_missing, std::memory_order_relaxed);
    stale_.fetch_add(with_stale, std::memory_order_relaxed);
    std::vector<Assignment> rows(n);
    const int64_t ts = now_ms();
    for (size_t i = 0; i < n; ++i) {
        const auto& d = b.decisions[i];
        const auto& served = out.variants[size_t(d.variant)];
        auto& row = rows[i];
        row.ts = ts;
        row.key = field_text(requests[i], s->key);
        row.tenant = field_text(requests[i], s->definition.tenant_field);
        row.variant = served.variant;
        row.model = served.model;
        row.version = served.version;
        row.fallback = std::string(plugins::fallback_name(d.fallback));
        row.prediction = b.predictions[i];
        row.revision = s->revision;
        row.missing = joined(out.missing[i]);
        row.stale = joined(out.stale[i]);
    }
    if (const double share = s->definition.log_inputs; share > 0)
        for (size_t v = 0; v < nv; ++v) {
            const size_t w = path.plan().width(v);
            for (size_t k = 0; k < b.rows_of[v].size(); ++k)
                if (sampled(share))
                    rows[b.rows_of[v][k]].inputs = inputs_json(path.plan().names(v), b.inputs[v].data() + k * w);
        }
    const int64_t latency = micros_since(started);  // the caller waited for the whole batch
    for (auto& row : rows) row.latency_us = latency;
    log_.append(std::move(rows));  // the whole batch in one append
    for (size_t i = 0; i < n; ++i)
        if (b.decisions[i].shadows) run_shadows(*s, b.decisions[i].shadows, requests[i], ts);
    for (size_t v = 0; v < nv; ++v) {
        const TableShape& shape = s->tables[v];
        if (!shape.items) continue;
        out.items.resize(n);
        const size_t w = path.plan().width(v);
        for (size_t k = 0; k < b.rows_of[v].size(); ++k)
            out.items[b.rows_of[v][k]] = items_of(shape, b.inputs[v].data() + k * w);
    }
    out.decisions = std::move(b.decisions);
    out.predictions = std::move(b.predictions);
    return out;
}

int64_t Endpoint::revision() const { return current()->revision; }
EndpointDefinition Endpoint::definition() const { return current()->definition; }
std::string Endpoint::key() const { return current()->key; }
std::string Endpoint::tenant_field() const { return current()->definition.tenant_field; }

bool Endpoint::serves_items(std::string_view variant) const {
    const auto s = current();
    for (size_t i = 0; i < s->definition.variants.size(); ++i)
        if (s->definition.variants[i].name == variant) return s->tables[i].items > 0;
    return false;
}

bool Endpoint::admits(std::string_view tenant) {
    maybe_reload();
    const auto s = current();
    check_live(*s);
    const auto& allowed = s->definition.tenants;
    return allowed.empty() || std::binary_search(allowed.begin(), allowed.end(), tenant);
}
std::shared_ptr<plugins::Router> Endpoint::router() const { return current()->router; }
bool Endpoint::native() const { return current()->path->native(); }

std::vector<Endpoint::Served> Endpoint::variants() const {
    auto s = current();
    std::vector<Served> out;
    for (size_t v = 0; v < s->versions.size(); ++v)
        out.push_back({s->definition.variants[v].name, s->versions[v].ref(), s->versions[v].version});
    return out;
}

EndpointStats Endpoint::stats() const {
    auto s = current();
    EndpointStats out;
    out.router = s->router->stats();
    out.revision = s->revision;
    out.issues = s->issues;
    out.missing = missing_.load();
    out.stale = stale_.load();
    out.refused = refused_.load();
    out.shadow_errors = shadow_errors_.load();
    {
        std::lock_guard lock(mutex_);
        out.last_shadow_error = last_shadow_error_;
        out.rejected = rejected_;
    }
    out.log = log_.stats();
    return out;
}

std::string Endpoint::rejected() const {
    std::lock_guard lock(mutex_);
    std::string out;
    for (const auto& [variant, why] : rejected_)
        out += (out.empty() ? "" : "; ") + (variant.empty() ? why : variant + ": " + why);
    return out;
}

} // namespace keel::serving
