// core/include/keel/serving/request_path.hpp
#pragma once

#include "keel/plugins/router.hpp"

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

//! The native request path of an endpoint whose models are all native predictors: entity key ->
//! online features -> routing plugin -> prediction, in one call and without allocating in steady
//! state. Classifiers answer the probability of their last class, regressors their value.
class RequestPath {
public:
    //! `predictors[i]` serves variant i of the router.
    RequestPath(std::shared_ptr<plugins::Router> router, std::shared_ptr<features::OnlineReader> reader,
                std::string key_field, std::vector<std::shared_ptr<const inference::Predictor>> predictors);

    struct Answer {
        plugins::Decision decision;
        double prediction = 0;
    };
    //! InvalidArgument when the request lacks an integer key field.
    Answer serve(std::span<const plugins::Field> request) const;
    //! The prediction of variant `index` for the features of key `id` (shadow calls).
    double predict(int index, int64_t id) const;

private:
    std::shared_ptr<plugins::Router> router_;
    std::shared_ptr<features::OnlineReader> reader_;
    std::string key_;
    std::vector<std::shared_ptr<const inference::Predictor>> predictors_;
};

} // namespace keel::serving
