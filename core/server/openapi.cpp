// core/server/openapi.cpp: placeholder of the server skeleton, replaced by its implementation.
#include "keel/common/error.hpp"
