// core/include/keel/serving/request_path.hpp
#pragma once

#include "keel/plugins/router.hpp"
#include "keel/serving/input_plan.hpp"

#include <memory>
#include <span>
#include <string>
#include <vector>

namespace keel::features {
class OnlineReader;
}
namespace keel::inference {
class Predictor;
}

namespace keel::serving {

//! The request path of an endpoint: entity key -> online features (with per-value status) ->
//! routing plugin -> model inputs by name (InputPlan) -> prediction. serve() runs all of it in one
//! call when every variant is a native predictor, without allocating in steady state; prepare()
//! stops before the model for endpoints whose models are Python objects. Classifiers answer the
//! probability of their last class, regressors their value.
class RequestPath {
public:
    //! `predictors[i]` serves variant i of the router (null for a non-native model; empty: none
    //! native). `reader` may be null when the endpoint reads no online features.
    RequestPath(std::shared_ptr<plugins::Router> router, std::shared_ptr<features::OnlineReader> reader,
                std::string key_field, std::shared_ptr<const InputPlan> plan,
                std::vector<std::shared_ptr<const inference::Predictor>> predictors);

    struct Answer {
        plugins::Decision decision;
        double prediction = 0;
        std::span<const double> row;          //!< the model's inputs (thread-local: valid until the next call)
        std::span<const InputState> states;   //!< one per model input (same lifetime)
    };
    //! Every variant native. InvalidArgument when the request lacks the entity key or, under
    //! on_missing='error', an input has no fresh value.
    Answer serve(std::span<const plugins::Field> request) const;
    //! Routes and builds the chosen variant's inputs; prediction left 0 (Python models).
    Answer prepare(std::span<const plugins::Field> request) const;
    //! The inputs of variant `index` for this request (shadow calls), and its prediction when native.
    Answer inputs(int index, std::span<const plugins::Field> request) const;

    //! Many requests: one routing call each, one vectorized lookup, one predict call per variant.
    struct Batch {
        std::vector<plugins::Decision> decisions;
        std::vector<double> predictions;                 //!< filled when every variant is native
        std::vector<std::vector<uint32_t>> rows_of;      //!< per variant: request indices
        std::vector<std::vector<double>> inputs;         //!< per variant: rows_of.size() x width, row-major
        std::vector<std::vector<InputState>> states;     //!< same shape
    };
    //! `ids`: the entity key of each request (ignored without a reader).
    Batch serve_many(std::span<const std::span<const plugins::Field>> requests, const int64_t* ids,
                     bool predict) const;

    bool native() const { return native_; }
    const InputPlan& plan() const { return *plan_; }
    const std::string& key_field() const { return key_; }
    //! The entity key of a request; InvalidArgument naming the field when absent or not an integer.
    int64_t entity_id(std::span<const plugins::Field> request) const;

private:
    double run(int index, const double* row) const;
    Answer build(int index, std::span<const plugins::Field> request) const;

    std::shared_ptr<plugins::Router> router_;
    std::shared_ptr<features::OnlineReader> reader_;
    std::string key_;
    std::shared_ptr<const InputPlan> plan_;
    std::vector<std::shared_ptr<const inference::Predictor>> predictors_;
    bool native_ = false;
};

} // namespace keel::serving
