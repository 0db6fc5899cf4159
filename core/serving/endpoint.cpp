// core/serving/endpoint.cpp
#include "keel/serving/endpoint.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/features/online.hpp"
#include "keel/features/store.hpp"
#include "keel/inference/predictor.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/definition_check.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/serving/request_path.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"

namespace keel::serving {

struct Endpoint::State {
    int64_t revision = 0;
    EndpointDefinition definition;
    std::vector<registry::ModelVersion> versions;  // per variant
    std::shared_ptr<plugins::Router> router;
    std::shared_ptr<features::OnlineReader> reader;  // null when the endpoint reads no online feature
    std::shared_ptr<RequestPath> path;
    std::string key;  // the entity key field: the sticky key, logged per assignment
};

namespace {

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

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
    return out;
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

} // namespace

Endpoint::Endpoint(std::shared_ptr<storage::Workspace> ws, std::string name, AssignmentLogOptions log_options)
    : ws_(std::move(ws)), name_(std::move(name)), features_(std::make_unique<features::FeatureStore>(ws_)),
      log_(ws_, name_, log_options) {
    auto& db = ws_->db();
    token_ = db.change_token();
    generation_ = storage::read_generation(db);  // read before what it guards
    reload();
}

Endpoint::~Endpoint() = default;

std::shared_ptr<const Endpoint::State> Endpoint::current() const {
    std::lock_guard lock(mutex_);
    return state_;
}

void Endpoint::reload() {
    std::lock_guard reloading(reload_mutex_);
    EndpointStore store(*ws_);
    auto rev = store.current(name_);
    auto previous = current();
    auto next = std::make_shared<State>();
    next->revision = rev.revision;
    next->definition = rev.definition;
    const auto& d = next->definition;
    registry::Registry registry(*ws_);
    next->versions = resolve_variants(registry, d);
    bool same_models = previous && previous->revision == rev.revision;
    for (size_t i = 0; same_models && i < next->versions.size(); ++i)
        same_models = next->versions[i].ref() == previous->versions[i].ref();
    if (same_models) return;  // nothing moved
    std::vector<ServedModel> models;
    for (const auto& mv : next->versions) models.push_back({mv.ref(), model_input_names(mv)});
    std::shared_ptr<const InputPlan> plan;
    try {
        plan = plan_inputs(name_, d, models);
    } catch (const Error& e) {
        // An alias moved (below the API) onto a version the endpoint cannot feed: keep serving.
        if (!previous || e.kind() != ErrorKind::InvalidArgument) throw;
        std::lock_guard lock(mutex_);
        rejected_ = e.what();
        return;
    }
    std::vector<std::shared_ptr<const inference::Predictor>> predictors;
    for (size_t i = 0; i < d.variants.size(); ++i) {
        const auto& mv = next->versions[i];
        if (mv.flavour != "keel-native")
            throw_error(ErrorKind::InvalidArgument,
                        "endpoint '{}', variant '{}': model {} is a '{}' model, which only a Python host can run; the "
                        "core serves native models (log a model keel.inference can convert)",
                        name_, d.variants[i].name, mv.ref(), mv.flavour);
        auto p = inference::load_predictor(registry.load_artifact(mv.ref()));
        check_output(name_, d.variants[i], mv, *p, d.output);
        predictors.push_back(std::move(p));
    }
    const std::string key = entity_key(*features_, d);
    if (previous && previous->revision == rev.revision) {  // an alias moved: same router (and counters), reader
        next->router = previous->router;
        next->reader = previous->reader;
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
        if (!d.features.empty()) next->reader = features_->online_reader(d.features);
    }
    next->path = std::make_shared<RequestPath>(next->router, next->reader, key, std::move(plan), std::move(predictors));
    next->key = key;
    std::lock_guard lock(mutex_);
    state_ = std::move(next);
    rejected_.clear();
}

void Endpoint::refresh() {
    auto& db = ws_->db();
    token_ = db.change_token();
    generation_ = storage::read_generation(db);
    reload();
    // New online snapshots: materialize() in another process bumps no serving generation.
    if (auto s = current(); s->reader) s->reader->refresh();
}

Endpoint::Answer Endpoint::predict(std::span<const plugins::Field> request) {
    auto& db = ws_->db();
    uint64_t token = db.change_token();
    if (token_.exchange(token) != token) {
        int64_t generation = storage::read_generation(db);
        if (generation_.exchange(generation) != generation) reload();
    }
    auto s = current();
    auto a = s->path->serve(request);
    Answer out;
    size_t index = size_t(a.decision.variant);
    out.prediction = a.prediction;
    out.variant = s->definition.variants[index].name;
    out.model = s->versions[index].ref();
    out.version = s->versions[index].version;
    out.fallback = std::string(plugins::fallback_name(a.decision.fallback));
    const auto& names = s->path->plan().names(index);
    for (size_t j = 0; j < a.states.size(); ++j) {
        if (a.states[j] == InputState::Missing) out.missing.push_back(names[j]);
        else if (a.states[j] == InputState::Stale) out.stale.push_back(names[j]);
    }
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
    log_.append(std::move(row));
    return out;
}

int64_t Endpoint::revision() const { return current()->revision; }
EndpointDefinition Endpoint::definition() const { return current()->definition; }
plugins::RouterStats Endpoint::stats() const { return current()->router->stats(); }

std::string Endpoint::rejected() const {
    std::lock_guard lock(mutex_);
    return rejected_;
}

} // namespace keel::serving
