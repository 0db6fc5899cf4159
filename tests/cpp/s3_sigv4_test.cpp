// tests/cpp/s3_sigv4_test.cpp: the SigV4 signer against the worked examples in AWS's S3 documentation
// ("Signature Calculations for the Authorization Header: Transferring Payload in a Single Chunk"),
// and S3Location / S3Config::from_env. No server needed.
#include "keel/common/error.hpp"
#include "keel/storage/artifact_store.hpp"
#include "keel/storage/s3_client.hpp"
#include "keel/storage/s3_sigv4.hpp"

#include "support/expect_error.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

using keel::ErrorKind;
using keel::testing::error_message;
using keel::storage::S3Config;
using keel::storage::S3Location;
namespace sigv4 = keel::storage::sigv4;

namespace {

// The documentation's credentials, time and bucket (examplebucket, us-east-1).
const sigv4::Credentials kAws{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
constexpr const char* kDate = "20130524T000000Z";
constexpr const char* kHost = "examplebucket.s3.amazonaws.com";
const std::string kEmpty(sigv4::kEmptyPayloadSha256);

sigv4::Signature sign(const std::string& method, const std::string& uri, sigv4::Pairs query, sigv4::Pairs headers,
                      const std::string& payload) {
    headers.emplace_back("Host", kHost);
    headers.emplace_back("x-amz-date", kDate);
    headers.emplace_back("x-amz-content-sha256", payload);
    return sigv4::sign({method, uri, std::move(query), std::move(headers), payload}, kAws, "us-east-1", kDate);
}

} // namespace

TEST(S3SigV4, GetObjectWithRange) {
    auto s = sign("GET", "/test.txt", {}, {{"Range", "bytes=0-9"}}, kEmpty);
    EXPECT_EQ(s.canonical_request,
              "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
              "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
              "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(s.string_to_sign,
              "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
              "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    EXPECT_EQ(s.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    EXPECT_EQ(s.authorization,
              "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
              "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
              "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(S3SigV4, PutObjectWithAnEncodedKeyAndPayload) {
    const std::string payload = keel::storage::sha256_hex("Welcome to Amazon S3.");
    EXPECT_EQ(payload, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    auto s = sign("PUT", "/" + sigv4::uri_encode("test$file.text", true), {},
                  {{"Date", "Fri, 24 May 2013 00:00:00 GMT"}, {"x-amz-storage-class", "REDUCED_REDUNDANCY"}}, payload);
    EXPECT_EQ(s.canonical_request.substr(0, s.canonical_request.find('\n', 4)), "PUT\n/test%24file.text");
    EXPECT_EQ(s.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(S3SigV4, GetBucketLifecycleWithAValuelessParameter) {
    auto s = sign("GET", "/", {{"lifecycle", ""}}, {}, kEmpty);
    EXPECT_EQ(s.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST(S3SigV4, ListObjectsSortsTheQuery) {
    auto s = sign("GET", "/", {{"prefix", "J"}, {"max-keys", "2"}}, {}, kEmpty);
    EXPECT_EQ(s.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(S3SigV4, HeaderValuesAreTrimmedAndNamesLowerCased) {
    auto plain = sign("GET", "/test.txt", {}, {{"range", "bytes=0-9"}}, kEmpty);
    auto spaced = sign("GET", "/test.txt", {}, {{"RANGE", "  bytes=0-9 "}}, kEmpty);
    EXPECT_EQ(plain.signature, spaced.signature);
}

TEST(S3SigV4, UriEncoding) {
    EXPECT_EQ(sigv4::uri_encode("A-z_0.9~", false), "A-z_0.9~");
    EXPECT_EQ(sigv4::uri_encode("a b+c=d&e", false), "a%20b%2Bc%3Dd%26e");
    EXPECT_EQ(sigv4::uri_encode("dir/file name", true), "dir/file%20name");
    EXPECT_EQ(sigv4::uri_encode("dir/file", false), "dir%2Ffile");
    EXPECT_EQ(sigv4::uri_encode("\xc3\xa4*", false), "%C3%A4%2A");
    EXPECT_EQ(sigv4::canonical_query({{"prefix", "a/b c"}, {"list-type", "2"}, {"continuation-token", "x+y="}}),
              "continuation-token=x%2By%3D&list-type=2&prefix=a%2Fb%20c");
}

TEST(S3SigV4, AmzDate) {
    EXPECT_EQ(sigv4::amz_date(std::chrono::system_clock::from_time_t(1369353600)), "20130524T000000Z");
}

TEST(S3Location, ParsesBucketAndPrefix) {
    auto a = S3Location::parse("s3://team-artifacts/keel/prod");
    EXPECT_EQ(a.bucket, "team-artifacts");
    EXPECT_EQ(a.prefix, "keel/prod/");
    EXPECT_EQ(a.url(), "s3://team-artifacts/keel/prod/");
    EXPECT_EQ(S3Location::parse("s3://bucket.with.dots").prefix, "");
    EXPECT_EQ(S3Location::parse("s3://abc/").prefix, "");
    EXPECT_EQ(S3Location::parse("s3://abc/x/").prefix, "x/");
}

TEST(S3Location, RefusesWhatIsNotAnS3Location) {
    for (const char* bad : {"https://bucket/x", "bucket/x", "s3://", "s3:///x"})
        EXPECT_NE(error_message(ErrorKind::InvalidArgument, [&] { S3Location::parse(bad); }).find("s3://<bucket>"),
                  std::string::npos)
            << bad;
    EXPECT_NE(error_message(ErrorKind::InvalidArgument, [] { S3Location::parse("s3://My_Bucket/x"); })
                  .find("'My_Bucket' in 's3://My_Bucket/x' is not a valid S3 bucket name"),
              std::string::npos);
    EXPECT_EQ(error_message(ErrorKind::InvalidArgument, [] { S3Location::parse("s3://ab"); }).empty(), false);
    EXPECT_NE(error_message(ErrorKind::InvalidArgument, [] { S3Location::parse("s3://abc/x//y"); }).find("'//'"),
              std::string::npos);
}

namespace {

// Sets (or, for nullptr, unsets) environment variables for one test and restores them after it.
class ScopedEnv {
public:
    ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
        for (auto [name, value] : vars) {
            const char* old = std::getenv(name);
            saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
            value ? setenv(name, value, 1) : unsetenv(name);
        }
    }
    ~ScopedEnv() {
        for (auto& [name, value] : saved_) value ? setenv(name.c_str(), value->c_str(), 1) : unsetenv(name.c_str());
    }

private:
    std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

} // namespace

TEST(S3Config, FromEnvDefaultsToAwsInTheRegion) {
    ScopedEnv env{{"AWS_ENDPOINT_URL_S3", nullptr}, {"AWS_ENDPOINT_URL", nullptr}, {"AWS_REGION", nullptr},
                  {"AWS_DEFAULT_REGION", "eu-west-3"}, {"AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"},
                  {"AWS_SECRET_ACCESS_KEY", "secret"}, {"AWS_SESSION_TOKEN", nullptr}};
    auto config = S3Config::from_env();
    EXPECT_EQ(config.endpoint, "https://s3.eu-west-3.amazonaws.com");
    EXPECT_EQ(config.region, "eu-west-3");
    EXPECT_FALSE(config.path_style);
    EXPECT_EQ(config.access_key, "AKIAEXAMPLE");
    EXPECT_EQ(config.secret_key, "secret");
}

TEST(S3Config, FromEnvTakesTheS3EndpointFirstWithPathStyle) {
    ScopedEnv env{{"AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000"}, {"AWS_ENDPOINT_URL", "http://other:1"},
                  {"AWS_REGION", "us-west-2"}, {"AWS_DEFAULT_REGION", "eu-west-3"},
                  {"AWS_ACCESS_KEY_ID", nullptr}, {"AWS_SECRET_ACCESS_KEY", nullptr}};
    auto config = S3Config::from_env();
    EXPECT_EQ(config.endpoint, "http://127.0.0.1:9000");
    EXPECT_EQ(config.region, "us-west-2");
    EXPECT_TRUE(config.path_style);
    EXPECT_TRUE(config.access_key.empty());
}

TEST(S3Config, FromEnvRefusesHalfAKeyPair) {
    ScopedEnv env{{"AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"}, {"AWS_SECRET_ACCESS_KEY", nullptr}};
    EXPECT_NE(error_message(ErrorKind::InvalidArgument, [] { S3Config::from_env(); })
                  .find("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
              std::string::npos);
}

TEST(S3Client, RefusesABadEndpointWhenMade) {
    auto location = S3Location::parse("s3://bucket/x");
    for (const char* bad : {"127.0.0.1:9000", "ftp://host", "http://host:99999", "http://host/path", "http://:80"}) {
        S3Config config;
        config.endpoint = bad;
        EXPECT_NE(error_message(ErrorKind::InvalidArgument, [&] { keel::storage::S3Client(config, location); })
                      .find("S3 endpoint"),
                  std::string::npos)
            << bad;
    }
}
