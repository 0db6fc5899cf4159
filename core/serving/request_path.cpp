// core/serving/request_path.cpp
#include "keel/serving/request_path.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/features/online.hpp"
#include "keel/inference/predictor.hpp"

namespace keel::serving {

using Status = features::OnlineReader::Status;

RequestPath::RequestPath(std::shared_ptr<plugins::Router> router, std::shared_ptr<features::OnlineReader> reader,
                         std::string key_field, std::shared_ptr<const InputPlan> plan,
                         std::vector<std::shared_ptr<const inference::Predictor>> predictors)
    : router_(std::move(router)), reader_(std::move(reader)), key_(std::move(key_field)), plan_(std::move(plan)),
      predictors_(std::move(predictors)) {
    if (!router_ || !plan_) throw_error(ErrorKind::InvalidArgument, "a request path needs a router and an input plan");
    if (plan_->variants() != router_->config().variants.size())
        throw_error(ErrorKind::InvalidArgument, "the input plan has {} variants, the router {}", plan_->variants(),
                    router_->config().variants.size());
    if (reader_ && reader_->features() != plan_->spec().features)
        throw_error(ErrorKind::InvalidArgument, "the online reader and the input plan list different features");
    if (!reader_ && !plan_->spec().features.empty())
        throw_error(ErrorKind::InvalidArgument, "the endpoint reads online features but has no online reader");
    native_ = predictors_.size() == plan_->variants();
    for (size_t i = 0; i < predictors_.size(); ++i) {
        if (!predictors_[i]) {
            native_ = false;
            continue;
        }
        if (predictors_[i]->num_features() != plan_->width(i))
            throw_error(ErrorKind::InvalidArgument,
                        "endpoint '{}', variant '{}': its native model reads {} features but its signature names {}",
                        plan_->spec().endpoint, router_->variant_name(int(i)), predictors_[i]->num_features(),
                        plan_->width(i));
    }
}

int64_t RequestPath::entity_id(std::span<const plugins::Field> request) const {
    for (const auto& f : request)
        if (f.name == key_) {
            if (auto* id = std::get_if<int64_t>(&f.value)) return *id;
            break;
        }
    throw_error(ErrorKind::InvalidArgument,
                "request has no integer '{}' (the entity key the endpoint's features are looked up by)", key_);
}

double RequestPath::run(int index, const double* row) const {
    const auto& p = *predictors_[size_t(index)];
    thread_local std::vector<double> out;
    out.resize(p.num_outputs());
    p.predict_row(row, out.data());
    return p.task() == inference::Task::Classification ? out.back() : out.front();
}

RequestPath::Answer RequestPath::build(int index, std::span<const plugins::Field> request) const {
    thread_local std::vector<double> feats, row;
    thread_local std::vector<Status> status;
    thread_local std::vector<InputState> states;
    const double* f = nullptr;
    const Status* s = nullptr;
    if (reader_) {
        int64_t id = entity_id(request);
        feats.resize(reader_->width());
        status.resize(reader_->width());
        reader_->lookup(&id, 1, feats.data(), status.data(), now_ms());
        f = feats.data();
        s = status.data();
    }
    size_t w = plan_->width(size_t(index));
    row.resize(w);
    states.resize(w);
    plan_->fill(size_t(index), f, s, request, row.data(), states.data());
    Answer a;
    a.decision.variant = index;
    a.row = {row.data(), w};
    a.states = {states.data(), w};
    return a;
}

RequestPath::Answer RequestPath::inputs(int index, std::span<const plugins::Field> request) const {
    if (index < 0 || size_t(index) >= plan_->variants())
        throw_error(ErrorKind::InvalidArgument, "variant index {} is out of range", index);
    Answer a = build(index, request);
    if (size_t(index) < predictors_.size() && predictors_[size_t(index)]) a.prediction = run(index, a.row.data());
    return a;
}

RequestPath::Answer RequestPath::prepare(std::span<const plugins::Field> request) const {
    if (reader_) entity_id(request);  // a request without its key is refused before it is routed
    auto d = router_->route(request);
    Answer a = build(d.variant, request);
    a.decision = d;
    return a;
}

RequestPath::Answer RequestPath::serve(std::span<const plugins::Field> request) const {
    if (!native_) throw_error(ErrorKind::InvalidArgument, "serve() needs every variant to be a native predictor");
    Answer a = prepare(request);
    a.prediction = run(a.decision.variant, a.row.data());
    return a;
}

RequestPath::Batch RequestPath::serve_many(std::span<const std::span<const plugins::Field>> requests,
                                           const int64_t* ids, bool predict) const {
    const size_t n = requests.size();
    Batch b;
    b.decisions.resize(n);
    for (size_t i = 0; i < n; ++i) b.decisions[i] = router_->route(requests[i]);
    const size_t fw = reader_ ? reader_->width() : 0;
    std::vector<double> feats(n * fw);
    std::vector<Status> status(n * fw);
    if (reader_) reader_->lookup(ids, n, feats.data(), status.data(), now_ms());
    const size_t nv = plan_->variants();
    b.rows_of.resize(nv);
    for (size_t i = 0; i < n; ++i) b.rows_of[size_t(b.decisions[i].variant)].push_back(uint32_t(i));
    b.inputs.resize(nv);
    b.states.resize(nv);
    for (size_t v = 0; v < nv; ++v) {
        const size_t w = plan_->width(v), m = b.rows_of[v].size();
        b.inputs[v].resize(m * w);
        b.states[v].resize(m * w);
        for (size_t k = 0; k < m; ++k) {
            size_t i = b.rows_of[v][k];
            try {
                plan_->fill(v, reader_ ? feats.data() + i * fw : nullptr, reader_ ? status.data() + i * fw : nullptr,
                            requests[i], b.inputs[v].data() + k * w, b.states[v].data() + k * w);
            } catch (const Error& e) {
                throw Error(e.kind(), fmt::format("request {}: {}", i, e.what()));
            }
        }
    }
    if (!predict || !native_) return b;
    b.predictions.assign(n, 0.0);
    for (size_t v = 0; v < nv; ++v) {
        const size_t m = b.rows_of[v].size();
        if (!m) continue;
        const auto& p = *predictors_[v];
        const size_t k = p.num_outputs();
        std::vector<double> out(m * k);
        p.predict(b.inputs[v].data(), m, out.data());
        const bool last = p.task() == inference::Task::Classification;
        for (size_t r = 0; r < m; ++r) b.predictions[b.rows_of[v][r]] = out[r * k + (last ? k - 1 : 0)];
    }
    return b;
}

} // namespace keel::serving
