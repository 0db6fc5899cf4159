// core/include/keel/plugins/quality_target.hpp
#pragma once

#include "keel/plugins/quality.hpp"

#include <string>
#include <vector>

namespace keel::features {
class FeatureStore;
}

namespace keel::plugins {

//! A quality target (a lineage ref) as its rules see it. For `feature_view:NAME` naming a view of
//! the workspace: the columns a rule may name (join keys, event and created time, non-vector
//! features), its PII columns and those the caller's role may not read. Any other target is not
//! known: `columns` is empty, and nothing is checked or masked.
struct TargetColumns {
    std::string label;                 //!< "feature view 'activity'", or the ref itself
    std::vector<std::string> columns;  //!< empty when the target is not known
    std::vector<std::string> pii;
    std::vector<std::string> masked;   //!< PII columns the role may not read
};

TargetColumns target_columns(features::FeatureStore& store, const std::string& target, const std::string& role);

//! Marks the batch's PII columns (their profiles are masked) and, among them, those the caller may
//! not read (helpers mask their values), all masked by `mask`, which must outlive the batch's use.
void mark_pii(Batch& batch, const TargetColumns& target, const Masker& mask);

} // namespace keel::plugins
