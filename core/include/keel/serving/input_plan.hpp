// core/include/keel/serving/input_plan.hpp
#pragma once

#include "keel/features/online.hpp"
#include "keel/plugins/router.hpp"
#include "keel/serving/on_missing.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::serving {

//! What the endpoint offers its models.
struct InputSpec {
    std::string endpoint;
    std::vector<std::string> features;  //!< online features "view:column", in the reader's order
    std::vector<std::string> inputs;    //!< request fields fed to the model
    OnMissing on_missing = OnMissing::Error;
    std::vector<std::pair<std::string, double>> defaults;  //!< per model input name (on_missing Default)
};

//! One variant's model and the names of its inputs in the model's order.
struct ModelInputs {
    std::string variant;
    std::string model;                   //!< resolved ref, e.g. "churn/3" (for messages)
    std::vector<std::string> names;      //!< from the model's signature ("" / x0, x1...: unnamed)
    std::vector<std::string> declared;   //!< signature=[...] given on the endpoint, for unnamed models
    //! A prediction table's: a null online value (a rank without an item) is a value, not a missing
    //! input; an entity the table does not hold is still missing.
    bool nulls_are_values = false;
};

//! The state of one model input in one answer.
enum class InputState : uint8_t { Ok = 0, Missing, Stale };

//! Maps every model input, by name, onto an online feature or a request field, once per endpoint
//! revision; then fills model rows without allocating. A request field named like a model input
//! always wins over the online value (callers can send what they know). Construction refuses a
//! variant whose model reads names the endpoint does not provide (InvalidArgument naming the
//! endpoint, variant, model, the missing and the extra names) and a model without named inputs
//! unless signature= names them.
class InputPlan {
public:
    InputPlan(InputSpec spec, std::vector<ModelInputs> variants);

    size_t variants() const { return plans_.size(); }
    size_t width(size_t variant) const { return plans_.at(variant).names.size(); }
    const std::vector<std::string>& names(size_t variant) const { return plans_.at(variant).names; }
    //! Indexes into spec().features that `variant` reads.
    std::vector<size_t> features_read(size_t variant) const;
    const InputSpec& spec() const { return spec_; }

    //! Fills `row` and `state` (width(variant) each) from one looked-up feature row (`feats`,
    //! `status`: spec().features.size() each; null when the endpoint reads no online features) and
    //! the request's fields, then applies the policy: Error throws InvalidArgument naming every
    //! missing and stale input; Default puts the declared default in (InvalidArgument when an input
    //! has none); Flag leaves NaN. Allocation-free unless it throws.
    void fill(size_t variant, const double* feats, const features::OnlineReader::Status* status,
              std::span<const plugins::Field> request, double* row, InputState* state) const;

private:
    struct Source {
        int32_t feature = -1;  // index into spec_.features, or -1 (request only)
        bool has_default = false;
        double fallback = 0;
    };
    struct Plan {
        std::string variant, model;
        bool nulls_are_values = false;
        std::vector<std::string> names;
        std::vector<Source> sources;
        std::vector<std::pair<std::string, uint32_t>> by_name;  // sorted: request field -> input
    };
    [[noreturn]] void refuse(const Plan& p, const InputState* state, const char* why) const;

    InputSpec spec_;
    std::vector<Plan> plans_;
};

} // namespace keel::serving
