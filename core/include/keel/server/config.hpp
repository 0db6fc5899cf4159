// core/include/keel/server/config.hpp
#pragma once

#include "keel/server/http.hpp"
#include "keel/server/service.hpp"

#include <string>
#include <vector>

namespace keel::server {

//! Everything `keel-server` runs with: from a TOML file (--config), then flags over it.
struct ServerConfig {
    std::string workspace;       //!< a workspace directory (default: $KEEL_WORKSPACE, else ".")
    //! Where its artifacts live ("s3://bucket/prefix"; default: $KEEL_ARTIFACTS, else what the
    //! workspace recorded). keel.open() takes the same.
    std::string artifacts;
    HttpOptions http;
    ServiceOptions service;
    bool json = false;           //!< announce readiness as one JSON line on stdout
};

//! Reads a keel-serve.toml; InvalidArgument naming the file, the key and what is expected
//! (unknown keys are refused, so a typo never silently keeps a default).
void load_config_file(ServerConfig& config, const std::string& path);
//! Applies command-line flags (after --config, if given, is loaded); InvalidArgument on a bad flag.
//! Returns false when the flags asked for --help (usage() printed by the caller).
bool apply_flags(ServerConfig& config, const std::vector<std::string>& args);
std::string usage();
//! Refuses what must not run: serving beyond loopback without auth, a short static token.
void check_config(const ServerConfig& config);

} // namespace keel::server
