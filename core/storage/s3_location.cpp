// core/storage/s3_location.cpp: S3Location::parse and S3Config::from_env, the two ways a user names
// where a team workspace's objects live.
#include "keel/storage/s3_client.hpp"

#include "keel/common/error.hpp"

#include <cctype>
#include <charconv>
#include <cstdlib>

namespace keel::storage {

namespace {

// AWS's rules for bucket names (what every S3-compatible store accepts): 3-63 characters of
// lower-case letters, digits, '.' and '-', starting and ending with a letter or digit, no "..".
std::string bucket_problem(std::string_view name) {
    if (name.size() < 3 || name.size() > 63) return "it must be 3 to 63 characters long";
    for (unsigned char c : name)
        if (!(std::islower(c) || std::isdigit(c) || c == '.' || c == '-'))
            return "it may hold only lower-case letters, digits, '.' and '-'";
    auto alnum = [](unsigned char c) { return std::islower(c) || std::isdigit(c); };
    if (!alnum(name.front()) || !alnum(name.back())) return "it must start and end with a letter or digit";
    if (name.find("..") != std::string_view::npos) return "it may not hold \"..\"";
    return {};
}

std::string env(const char* name) {
    const char* value = std::getenv(name);
    return value ? value : "";
}

} // namespace

S3Location S3Location::parse(std::string_view url) {
    constexpr std::string_view scheme = "s3://";
    if (url.substr(0, scheme.size()) != scheme)
        throw_error(ErrorKind::InvalidArgument, "'{}' is not an S3 location: expected s3://<bucket>[/<prefix>]", url);
    std::string_view rest = url.substr(scheme.size());
    size_t slash = rest.find('/');
    S3Location location;
    location.bucket = std::string(rest.substr(0, slash));
    if (location.bucket.empty())
        throw_error(ErrorKind::InvalidArgument, "'{}' names no bucket: expected s3://<bucket>[/<prefix>]", url);
    if (auto problem = bucket_problem(location.bucket); !problem.empty())
        throw_error(ErrorKind::InvalidArgument, "'{}' in '{}' is not a valid S3 bucket name: {}", location.bucket, url,
                    problem);
    if (slash != std::string_view::npos) location.prefix = std::string(rest.substr(slash + 1));
    if (location.prefix.find("//") != std::string::npos || (!location.prefix.empty() && location.prefix.front() == '/'))
        throw_error(ErrorKind::InvalidArgument, "the prefix of '{}' has an empty folder name ('//'): remove the extra '/'",
                    url);
    if (location.prefix.find('?') != std::string::npos || location.prefix.find('#') != std::string::npos)
        throw_error(ErrorKind::InvalidArgument, "'{}' has a query or fragment; an S3 location is s3://<bucket>[/<prefix>]",
                    url);
    if (!location.prefix.empty() && location.prefix.back() != '/') location.prefix += '/';
    return location;
}

std::string S3Location::url() const {
    return "s3://" + bucket + "/" + prefix;
}

S3Config S3Config::from_env() {
    S3Config config;
    for (const char* name : {"AWS_REGION", "AWS_DEFAULT_REGION"}) {
        if (auto value = env(name); !value.empty()) {
            config.region = value;
            break;
        }
    }
    for (const char* name : {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"}) {
        if (auto value = env(name); !value.empty()) {
            config.endpoint = value;
            config.path_style = true;  // custom stores rarely resolve bucket.host names
            break;
        }
    }
    if (config.endpoint.empty()) config.endpoint = "https://s3." + config.region + ".amazonaws.com";
    config.access_key = env("AWS_ACCESS_KEY_ID");
    config.secret_key = env("AWS_SECRET_ACCESS_KEY");
    config.session_token = env("AWS_SESSION_TOKEN");
    if (config.access_key.empty() != config.secret_key.empty())
        throw_error(ErrorKind::InvalidArgument, "{} is set but {} is not: set both, or neither for anonymous access",
                    config.access_key.empty() ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID",
                    config.access_key.empty() ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY");
    config.ca_file = env("AWS_CA_BUNDLE");
    for (auto [name, target] : {std::pair{"KEEL_S3_MULTIPART_THRESHOLD", &config.multipart_threshold},
                                std::pair{"KEEL_S3_PART_SIZE", &config.part_size}}) {
        const std::string value = env(name);
        if (value.empty()) continue;
        int64_t bytes = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), bytes);
        if (ec != std::errc() || end != value.data() + value.size() || bytes <= 0)
            throw_error(ErrorKind::InvalidArgument, "{} is '{}': expected a size in bytes, such as 67108864", name, value);
        *target = bytes;
    }
    return config;
}

} // namespace keel::storage
