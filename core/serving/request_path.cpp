// core/serving/request_path.cpp
#include "keel/serving/request_path.hpp"

#include "keel/common/error.hpp"
#include "keel/features/online.hpp"
#include "keel/inference/predictor.hpp"

namespace keel::serving {

RequestPath::RequestPath(std::shared_ptr<plugins::Router> router, std::shared_ptr<features::OnlineReader> reader,
                         std::string key_field, std::vector<std::shared_ptr<const inference::Predictor>> predictors)
    : router_(std::move(router)), reader_(std::move(reader)), key_(std::move(key_field)), predictors_(std::move(predictors)) {
    if (!router_ || !reader_) throw_error(ErrorKind::InvalidArgument, "a request path needs a router and an online reader");
    for (size_t i = 0; i < predictors_.size(); ++i) {
        if (!predictors_[i]) throw_error(ErrorKind::InvalidArgument, "variant {} has no native predictor", i);
        if (predictors_[i]->num_features() != reader_->width())
            throw_error(ErrorKind::InvalidArgument,
                        "variant '{}' expects {} features but the endpoint looks up {}: list the model's inputs in "
                        "features=[...]",
                        router_->variant_name(int(i)), predictors_[i]->num_features(), reader_->width());
    }
}

namespace {
double run(const inference::Predictor& p, const double* row) {
    thread_local std::vector<double> out;
    out.resize(p.num_outputs());
    p.predict_row(row, out.data());
    return p.task() == inference::Task::Classification ? out.back() : out.front();
}
} // namespace

double RequestPath::predict(int index, int64_t id) const {
    thread_local std::vector<double> row;
    row.resize(reader_->width());
    reader_->lookup(&id, 1, row.data());
    return run(*predictors_.at(size_t(index)), row.data());
}

RequestPath::Answer RequestPath::serve(std::span<const plugins::Field> request) const {
    const int64_t* id = nullptr;
    for (const auto& f : request)
        if (f.name == key_) id = std::get_if<int64_t>(&f.value);
    if (!id)
        throw_error(ErrorKind::InvalidArgument,
                    "request has no integer '{}' (the entity key the endpoint's features are looked up by)", key_);
    Answer a;
    a.decision = router_->route(request);
    thread_local std::vector<double> row;
    row.resize(reader_->width());
    reader_->lookup(id, 1, row.data());
    a.prediction = run(*predictors_[size_t(a.decision.variant)], row.data());
    return a;
}

} // namespace keel::serving
