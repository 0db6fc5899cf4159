// core/include/keel/common/clock.hpp
#pragma once

#include <cstdint>
#include <string>

namespace keel {

//! Milliseconds since the Unix epoch, the unit of every timestamp Keel stores.
int64_t now_ms();

//! `ms` (since the epoch) as UTC text for messages: "2025-03-04 12:34:56 UTC".
std::string utc_text(int64_t ms);

//! A fresh random id: 32 lowercase hex characters (128 bits), like MLflow's run ids.
std::string random_hex_id();

//! The user running this process ($KEEL_USER, then $USER, then the uid), recorded on writes.
std::string current_user();

} // namespace keel
