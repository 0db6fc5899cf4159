// core/server/feature_routes.cpp: placeholder of the server skeleton, replaced by its implementation.
#include "keel/common/error.hpp"
