// core/include/keel/inference/record_keys.hpp
#pragma once

// The keys of a model record (format.hpp), stated once. The importers (Python, through
// keel._core.model_keys, or C++) write them; Predictor reads them. Keys with a position in them are
// templates with "{}" placeholders, filled in the same way by fmt::format and Python's str.format.

#include <string_view>

namespace keel::inference::keys {

// ---- every record
//! "regression", "classification" or "factorization"
inline constexpr std::string_view kTask = "task";
//! "linear", "mlp", "trees" or "factorization"
inline constexpr std::string_view kModelKind = "model.kind";
inline constexpr std::string_view kFeatureNames = "features.names";   //!< input columns, in the order the model reads them
inline constexpr std::string_view kFeatureDtypes = "features.dtypes"; //!< one dtype per input column
inline constexpr std::string_view kMetadata = "metadata";             //!< JSON object, see the meta keys below
inline constexpr std::string_view kOutputTransform = "output.transform";
inline constexpr std::string_view kOutputSigmoidScale = "output.sigmoid_scale";

// ---- preprocessing: pre.count stages; stage s has pre.{s}.blocks blocks; block b of stage s keeps
// its fields under the prefix pre.{s}.{b}. (kPreBlock) followed by one of the kBlock* names.
inline constexpr std::string_view kPreCount = "pre.count";
inline constexpr std::string_view kPreStageBlocks = "pre.{}.blocks";
inline constexpr std::string_view kPreBlock = "pre.{}.{}.";
inline constexpr std::string_view kBlockKind = "kind";  //!< "passthrough", "scale", "onehot", "ordinal"
inline constexpr std::string_view kBlockColumns = "columns";
inline constexpr std::string_view kBlockMean = "mean";
inline constexpr std::string_view kBlockScale = "scale";
inline constexpr std::string_view kBlockCategories = "categories";
inline constexpr std::string_view kBlockOffsets = "offsets";
inline constexpr std::string_view kBlockDrop = "drop";
inline constexpr std::string_view kBlockHandleUnknown = "handle_unknown";
inline constexpr std::string_view kBlockUnknownValue = "unknown_value";
inline constexpr std::string_view kBlockMissingValue = "missing_value";

// ---- linear models and multilayer perceptrons
inline constexpr std::string_view kLinearCoef = "linear.coef";
inline constexpr std::string_view kLinearIntercept = "linear.intercept";
inline constexpr std::string_view kMlpLayers = "mlp.layers";
inline constexpr std::string_view kMlpActivation = "mlp.activation";
inline constexpr std::string_view kMlpLayerWeights = "mlp.{}.weights";
inline constexpr std::string_view kMlpLayerBias = "mlp.{}.bias";

// ---- tree ensembles: trees in one flat node layout
inline constexpr std::string_view kTreeNRaw = "tree.n_raw";
inline constexpr std::string_view kTreeLeafWidth = "tree.leaf_width";
inline constexpr std::string_view kTreeBase = "tree.base";
inline constexpr std::string_view kTreeScale = "tree.scale";
inline constexpr std::string_view kTreeDivisor = "tree.divisor";
inline constexpr std::string_view kTreeCompare = "tree.compare";
inline constexpr std::string_view kTreeOffsets = "tree.offsets";
inline constexpr std::string_view kTreeOutput = "tree.output";
inline constexpr std::string_view kNodeFeature = "node.feature";
inline constexpr std::string_view kNodeThreshold = "node.threshold";
inline constexpr std::string_view kNodeLeft = "node.left";
inline constexpr std::string_view kNodeRight = "node.right";
inline constexpr std::string_view kNodeValue = "node.value";
inline constexpr std::string_view kNodeDefaultLeft = "node.default_left";
inline constexpr std::string_view kNodeMissing = "node.missing";
inline constexpr std::string_view kNodeCategory = "node.category";
inline constexpr std::string_view kCatOffsets = "cat.offsets";
inline constexpr std::string_view kCatWords = "cat.words";

// ---- factorization recommenders
inline constexpr std::string_view kMfDim = "mf.dim";
inline constexpr std::string_view kMfUserFactors = "mf.user_factors";
inline constexpr std::string_view kMfItemFactors = "mf.item_factors";
inline constexpr std::string_view kMfUserBias = "mf.user_bias";
inline constexpr std::string_view kMfItemBias = "mf.item_bias";
inline constexpr std::string_view kMfGlobalBias = "mf.global_bias";

// ---- fields of the metadata JSON object (kMetadata). The core stores it as given; the predictor
// wrapper reads these to map outputs and inputs to labels.
inline constexpr std::string_view kMetaSource = "source";              //!< e.g. "lightgbm.LGBMClassifier"
inline constexpr std::string_view kMetaClasses = "classes";            //!< class labels, one per output
inline constexpr std::string_view kMetaVocabularies = "vocabularies";  //!< column -> {labels, unknown, nan_code}
inline constexpr std::string_view kMetaUserIds = "user_ids";
inline constexpr std::string_view kMetaItemIds = "item_ids";

} // namespace keel::inference::keys
