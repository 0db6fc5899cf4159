// core/server/config.cpp: keel-serve.toml and the keel-server flags.
#include "keel/server/config.hpp"

#include "keel/common/error.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace keel::server {

namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path, std::string_view what) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw_error(ErrorKind::InvalidArgument, "cannot read {} '{}': {}", what, path, std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// A token file holds text: surrounding whitespace (an editor's newline) is not part of it.
std::string read_token(const std::string& path, std::string_view what = "the token file") {
    std::string token = read_file(path, what);
    const auto first = token.find_first_not_of(" \t\r\n");
    const auto last = token.find_last_not_of(" \t\r\n");
    return first == std::string::npos ? std::string{} : token.substr(first, last - first + 1);
}

// Reads one table's keys with the key's full name in every message, refusing unknown keys.
class Section {
public:
    Section(const toml::table& table, std::string prefix, std::string file)
        : table_(table), prefix_(std::move(prefix)), file_(std::move(file)) {}

    void known(std::initializer_list<std::string_view> keys) const {
        for (auto&& [key, _] : table_) {
            if (std::find(keys.begin(), keys.end(), key.str()) != keys.end()) continue;
            std::string list;
            for (auto k : keys) list += (list.empty() ? "" : ", ") + std::string(k);
            throw_error(ErrorKind::InvalidArgument, "{}: unknown key '{}{}' (known here: {})", file_, prefix_,
                        key.str(), list);
        }
    }
    void text(std::string_view key, std::string& out) const {
        if (const auto* node = table_.get(key)) {
            if (!node->is_string()) wrong(key, "a string");
            out = *node->value<std::string>();
        }
    }
    //! A path, relative to the configuration file's folder when not absolute.
    void path(std::string_view key, std::string& out) const {
        std::string p;
        text(key, p);
        if (!p.empty()) out = resolve(p);
    }
    void paths(std::string_view key, std::vector<std::string>& out) const {
        if (const auto* node = table_.get(key)) {
            const auto* array = node->as_array();
            if (!array) wrong(key, "a list of file paths");
            out.clear();
            for (const auto& item : *array) {
                if (!item.is_string()) wrong(key, "a list of file paths");
                out.push_back(resolve(*item.value<std::string>()));
            }
        }
    }
    void texts(std::string_view key, std::vector<std::string>& out) const {
        if (const auto* node = table_.get(key)) {
            const auto* array = node->as_array();
            if (!array) wrong(key, "a list of strings");
            out.clear();
            for (const auto& item : *array) {
                if (!item.is_string()) wrong(key, "a list of strings");
                out.push_back(*item.value<std::string>());
            }
        }
    }
    template <typename T>
    void integer(std::string_view key, T& out, int64_t min, int64_t max) const {
        if (const auto* node = table_.get(key)) {
            if (!node->is_integer()) wrong(key, fmt::format("an integer from {} to {}", min, max));
            const int64_t v = *node->value<int64_t>();
            if (v < min || v > max) wrong(key, fmt::format("an integer from {} to {}", min, max));
            out = T(v);
        }
    }
    void millis(std::string_view key, std::chrono::milliseconds& out) const {
        int64_t ms = out.count();
        integer(key, ms, 1, 3'600'000);
        out = std::chrono::milliseconds(ms);
    }
    void boolean(std::string_view key, bool& out) const {
        if (const auto* node = table_.get(key)) {
            if (!node->is_boolean()) wrong(key, "true or false");
            out = *node->value<bool>();
        }
    }
    const toml::table* sub(std::string_view key) const {
        const auto* node = table_.get(key);
        if (!node) return nullptr;
        if (!node->is_table()) wrong(key, "a table ([" + std::string(key) + "])");
        return node->as_table();
    }

private:
    [[noreturn]] void wrong(std::string_view key, std::string_view expected) const {
        throw_error(ErrorKind::InvalidArgument, "{}: '{}{}' must be {}", file_, prefix_, key, expected);
    }
    std::string resolve(const std::string& p) const {
        if (p.empty() || fs::path(p).is_absolute()) return p;
        return (fs::path(file_).parent_path() / p).lexically_normal().string();
    }
    const toml::table& table_;
    std::string prefix_, file_;
};

bool is_loopback(const std::string& host) {
    return host == "localhost" || host == "::1" || host == "[::1]" || host.starts_with("127.");
}

uint16_t parse_port(std::string_view text) {
    int port = -1;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
    if (ec != std::errc() || end != text.data() + text.size() || port < 0 || port > 65535)
        throw_error(ErrorKind::InvalidArgument, "--port {} is not a port: use 1 to 65535 (0: any free port)", text);
    return uint16_t(port);
}

int parse_threads(std::string_view text) {
    int n = -1;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || n < 0 || n > 1024)
        throw_error(ErrorKind::InvalidArgument, "--threads {} is not a thread count: use 1 to 1024 (0: one per core)",
                    text);
    return n;
}

} // namespace

void load_config_file(ServerConfig& config, const std::string& path) {
    toml::table root;
    try {
        root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        const auto& where = e.source().begin;
        if (!fs::exists(path)) throw_error(ErrorKind::InvalidArgument, "--config {}: no such file", path);
        throw_error(ErrorKind::InvalidArgument, "{}:{}:{}: {}", path, where.line, where.column, e.description());
    }
    const Section top(root, "", path);
    top.known({"workspace", "artifacts", "endpoints", "http", "tls", "auth", "requests"});
    top.path("workspace", config.workspace);
    top.text("artifacts", config.artifacts);
    top.texts("endpoints", config.service.endpoints);
    if (const auto* t = top.sub("http")) {
        const Section http(*t, "http.", path);
        http.known({"host", "port", "threads", "max_body_bytes", "max_header_bytes", "request_deadline_ms",
                    "idle_timeout_ms", "max_connections", "reuse_port", "drain_timeout_ms"});
        auto& o = config.http;
        http.text("host", o.host);
        http.integer("port", o.port, 0, 65535);
        http.integer("threads", o.threads, 0, 1024);
        http.integer("max_body_bytes", o.limits.max_body_bytes, 1024, int64_t(1) << 32);
        http.integer("max_header_bytes", o.limits.max_header_bytes, 1024, 1 << 20);
        http.millis("request_deadline_ms", o.limits.request_deadline);
        http.millis("idle_timeout_ms", o.limits.idle_timeout);
        http.integer("max_connections", o.limits.max_connections, 1, 1'000'000);
        http.boolean("reuse_port", o.reuse_port);
        http.millis("drain_timeout_ms", o.drain_timeout);
    }
    if (const auto* t = top.sub("tls")) {
        const Section tls(*t, "tls.", path);
        tls.known({"certificate", "private_key"});
        TlsFiles files = config.http.tls.value_or(TlsFiles{});
        tls.path("certificate", files.certificate);
        tls.path("private_key", files.private_key);
        config.http.tls = files;
    }
    if (const auto* t = top.sub("auth")) {
        const Section auth(*t, "auth.", path);
        auth.known({"static_token_file", "hs256_secret_files", "public_key_files", "jwks_file", "issuer", "audience",
                    "leeway_seconds", "tenant_claim", "roles_claim"});
        auto& o = config.service.auth;
        std::string token_file;
        auth.path("static_token_file", token_file);
        if (!token_file.empty()) o.static_token = read_token(token_file, "auth.static_token_file of " + path);
        std::vector<std::string> secret_files;
        auth.paths("hs256_secret_files", secret_files);
        for (const auto& f : secret_files)  // a secret file's bytes, exactly
            o.hs256_secrets.push_back(read_file(f, "auth.hs256_secret_files of " + path));
        auth.paths("public_key_files", o.public_key_files);
        auth.path("jwks_file", o.jwks_file);
        auth.text("issuer", o.issuer);
        auth.text("audience", o.audience);
        int64_t leeway = o.leeway.count();
        auth.integer("leeway_seconds", leeway, 0, 3600);
        o.leeway = std::chrono::seconds(leeway);
        auth.text("tenant_claim", o.tenant_claim);
        auth.text("roles_claim", o.roles_claim);
    }
    if (const auto* t = top.sub("requests")) {
        const Section requests(*t, "requests.", path);
        requests.known({"max_rows", "max_fields"});
        requests.integer("max_rows", config.service.requests.max_rows, 1, 1'000'000);
        requests.integer("max_fields", config.service.requests.max_fields, 1, 65'536);
    }
}

bool apply_flags(ServerConfig& config, const std::vector<std::string>& args) {
    std::vector<std::string> endpoints;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& flag = args[i];
        if (flag == "-h" || flag == "--help") return false;
        if (flag == "--json") {
            config.json = true;
            continue;
        }
        if (!flag.starts_with("--"))
            throw_error(ErrorKind::InvalidArgument, "unexpected argument '{}' (see keel-server --help)", flag);
        if (i + 1 >= args.size()) throw_error(ErrorKind::InvalidArgument, "{} needs a value (see keel-server --help)", flag);
        const std::string& value = args[++i];
        if (flag == "--config") continue;  // loaded before the flags
        else if (flag == "--workspace") config.workspace = value;
        else if (flag == "--artifacts") config.artifacts = value;
        else if (flag == "--endpoint") endpoints.push_back(value);
        else if (flag == "--host") config.http.host = value;
        else if (flag == "--port") config.http.port = parse_port(value);
        else if (flag == "--threads") config.http.threads = parse_threads(value);
        else if (flag == "--token-file") config.service.auth.static_token = read_token(value);
        else if (flag == "--tls-cert") config.http.tls = TlsFiles{value, config.http.tls ? config.http.tls->private_key : ""};
        else if (flag == "--tls-key") config.http.tls = TlsFiles{config.http.tls ? config.http.tls->certificate : "", value};
        else throw_error(ErrorKind::InvalidArgument, "unknown flag {} (see keel-server --help)", flag);
    }
    if (!endpoints.empty()) config.service.endpoints = std::move(endpoints);
    return true;
}

std::string usage() {
    return R"(usage: keel-server [--config keel-serve.toml] [--workspace DIR] [--artifacts s3://BUCKET/PREFIX]
                   [--endpoint NAME ...]
                   [--host 127.0.0.1] [--port 8080] [--threads N] [--token-file FILE]
                   [--tls-cert PEM --tls-key PEM] [--json]

Serves the endpoints of a Keel workspace over HTTP (no Python in the request path).
  --workspace DIR     the workspace (default: $KEEL_WORKSPACE, else the current directory)
  --artifacts URL     where its artifacts and feature files live (default: $KEEL_ARTIFACTS, else
                      what the workspace recorded); S3 settings from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID...
  --endpoint NAME     host this endpoint (repeat; default: every saved endpoint)
  --host, --port      where to listen (--port 0: any free port); serving beyond loopback needs auth
  --threads N         server threads (default: one per core)
  --token-file FILE   static bearer token (at least 16 characters), for a laptop; JWT keys go in --config
  --tls-cert/--tls-key  serve HTTPS (PEM files, re-read on SIGHUP)
  --config FILE       keel-serve.toml: [http] [tls] [auth] [requests] (flags override it)
  --json              announce readiness as one JSON line on stdout; errors as JSON on stderr
Signals: SIGTERM/SIGINT drain requests in flight and exit 0; SIGHUP re-reads the TLS files.
)";
}

void check_config(const ServerConfig& config) {
    const auto& auth = config.service.auth;
    if (!auth.static_token.empty() && auth.static_token.size() < 16)
        throw_error(ErrorKind::InvalidArgument, "the static token has {} characters: use at least 16 (e.g. "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))')", auth.static_token.size());
    if (!auth.enabled() && !is_loopback(config.http.host))
        throw_error(ErrorKind::InvalidArgument, "refusing to serve on {} without auth: anyone on the network could "
                    "call it. Give a token (--token-file) or JWT keys ([auth] in --config), or serve on loopback "
                    "(--host 127.0.0.1)", config.http.host);
    if (config.http.tls && (config.http.tls->certificate.empty() || config.http.tls->private_key.empty()))
        throw_error(ErrorKind::InvalidArgument, "TLS needs both a certificate and a private key (--tls-cert and "
                    "--tls-key, or [tls] certificate and private_key)");
}

} // namespace keel::server
