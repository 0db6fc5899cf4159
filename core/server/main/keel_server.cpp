// core/server/main/keel_server.cpp: the keel-server executable (what `keel serve` runs).
//
// Loads the configuration (--config, then flags), opens the workspace and the hosted endpoints,
// listens, announces itself, and serves until SIGTERM or SIGINT, which drain requests in flight.
// SIGHUP re-reads the TLS files. Errors before serving are reported by kind (a JSON line on stderr
// with --json) and exit with the kind's code, as the keel CLI does.
#include "../json_out.hpp"
#include "keel/common/error.hpp"
#include "keel/plugins/host.hpp"
#include "keel/server/config.hpp"
#include "keel/server/http.hpp"
#include "keel/server/service.hpp"
#include "keel/storage/workspace.hpp"

#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <pthread.h>
#include <thread>
#include <unistd.h>

namespace {

using namespace keel;
using namespace keel::server;

std::string json_string(std::string_view text) {
    std::string out;
    append_json_string(out, text);
    return out;
}

void report(std::string_view kind, std::string_view message, bool json) {
    std::fprintf(stderr, "keel-server: %.*s: %.*s\n", int(kind.size()), kind.data(), int(message.size()),
                 message.data());
    if (json) std::fprintf(stderr, "%s\n", error_body(kind, message).c_str());  // what keel.serve reads
}

std::shared_ptr<storage::Workspace> open_workspace(const ServerConfig& config) {
    namespace fs = std::filesystem;
    const std::string& path = config.workspace;
    if (!storage::WorkspaceLocation::is_database_url(path) &&
        (!fs::is_directory(path) || !fs::exists(fs::path(path) / "keel.db")))
        throw_error(ErrorKind::NotFound, "no Keel workspace at '{}': give --workspace (or $KEEL_WORKSPACE) the "
                    "folder keel.open() made, or a postgresql:// URL", path);
    auto location = storage::WorkspaceLocation::from_env(path);  // $KEEL_ARTIFACTS, the cache settings
    if (!config.artifacts.empty()) location.artifacts = config.artifacts;
    return storage::Workspace::open(location);
}

// The built-in plugins (plugins/routing/sticky.lua, ...) are found as in Python: after the working
// directory and $KEEL_PLUGIN_PATH, in the package beside this executable (keel/bin/ -> keel/builtin/)
// or, in a checkout, the repository root (python/keel/bin/ -> ./).
void find_builtin_plugins() {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path bin = fs::read_symlink("/proc/self/exe", ec).parent_path();
    if (ec) return;
    for (const fs::path& root : {bin.parent_path() / "builtin", bin.parent_path().parent_path().parent_path()})
        if (fs::is_directory(root / "plugins", ec)) {
            plugins::set_search_path({root});
            return;
        }
}

std::string auth_mode(const AuthOptions& auth) {
    if (auth.jwt()) return auth.static_token.empty() ? "JWT" : "JWT and a static token";
    return auth.static_token.empty() ? "none (loopback only)" : "static bearer token";
}

int serve(ServerConfig& config) {
    check_config(config);
    // Signals are taken by one thread with sigwait(), never by a handler: blocked here, before any
    // thread starts, so every thread inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&signals, s);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    find_builtin_plugins();
    auto ws = open_workspace(config);
    Service service(ws, config.service);
    HttpServer http(config.http, [&service](const HttpRequest& r) { return service.handle(r); });

    std::string names;
    for (const auto& e : config.service.endpoints) names += (names.empty() ? "" : ", ") + json_string(e);
    const std::string scheme = config.http.tls ? "https" : "http";
    const std::string host = config.http.host.find(':') != std::string::npos && config.http.host.front() != '['
                                 ? "[" + config.http.host + "]" : config.http.host;
    const std::string url = fmt::format("{}://{}:{}", scheme, host, http.port());
    std::fprintf(stderr, "keel-server: serving %s of %s on %s (pid %d, auth: %s)\n",
                 config.service.endpoints.empty() ? "every saved endpoint" : "the named endpoints",
                 config.workspace.c_str(), url.c_str(), int(getpid()), auth_mode(config.service.auth).c_str());
    if (config.json)
        std::printf("{\"url\": %s, \"port\": %d, \"pid\": %d, \"endpoints\": [%s]}\n", json_string(url).c_str(),
                    int(http.port()), int(getpid()), names.c_str());
    std::fflush(stdout);

    std::thread watcher([&] {
        for (;;) {
            int s = 0;
            if (sigwait(&signals, &s) != 0) continue;
            if (s == SIGHUP) {
                try {
                    if (config.http.tls) http.reload_tls();
                    std::fprintf(stderr, "keel-server: SIGHUP: TLS files re-read\n");
                } catch (const Error& e) {
                    std::fprintf(stderr, "keel-server: SIGHUP: kept the old TLS files: %s\n", e.what());
                }
                continue;
            }
            if (s != SIGUSR1) std::fprintf(stderr, "keel-server: %s: draining requests in flight\n", strsignal(s));
            http.stop();
            return;
        }
    });
    http.run();
    pthread_kill(watcher.native_handle(), SIGUSR1);  // run() may have ended without a signal
    watcher.join();
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    ServerConfig config;
    if (const char* env = std::getenv("KEEL_WORKSPACE")) config.workspace = env;
    if (config.workspace.empty()) config.workspace = ".";
    config.json = std::find(args.begin(), args.end(), "--json") != args.end();
    try {
        for (size_t i = 0; i + 1 < args.size(); ++i)
            if (args[i] == "--config") load_config_file(config, args[i + 1]);
        if (!apply_flags(config, args)) {
            std::fputs(usage().c_str(), stdout);
            return 0;
        }
        return serve(config);
    } catch (const Error& e) {
        report(error_kind_name(e.kind()), e.what(), config.json);
        return error_kind_exit_code(e.kind());
    } catch (const std::exception& e) {
        report("Internal", e.what(), config.json);
        return error_kind_exit_code(ErrorKind::Internal);
    }
}
