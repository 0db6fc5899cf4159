// tests/cpp/support/plugin_dir.hpp
#pragma once

#include "keel/plugins/host.hpp"

#include "temp_dir.hpp"

#include <filesystem>
#include <fstream>
#include <string>

namespace keel::testing {

//! A temporary plugins/ folder (with a lib/ for required modules) holding files the test writes;
//! removed with everything in it when the test ends.
struct PluginDir {
    TempDir tmp;
    const std::filesystem::path root = tmp.path;
    const std::filesystem::path dir = root / "plugins";
    PluginDir() { std::filesystem::create_directories(dir / "lib"); }

    //! Writes `source` to plugins/<name> (folders made as needed); returns the file's path.
    std::string write(const std::string& name, const std::string& source) const {
        std::filesystem::path p = dir / name;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p, std::ios::binary) << source;
        return p.string();
    }
};

//! Default host limits, except that a plugin file is re-checked on every call: tests rewrite files.
inline keel::plugins::Limits reload_every_call_limits() {
    keel::plugins::Limits l;
    l.reload_check_ms = 0;
    return l;
}

} // namespace keel::testing
