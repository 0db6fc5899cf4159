// tests/cpp/s3_client_test.cpp: S3Client against a real S3 server (SeaweedFS), which CTest starts
// through tests/servers/with_servers.py --s3 (it exports KEEL_TEST_S3_ENDPOINT, KEEL_TEST_S3_BUCKET
// and the AWS_* credentials). The retry and timeout cases talk to a scripted loopback socket instead,
// since a real server cannot be made to fail on cue.
#include "keel/common/error.hpp"
#include "keel/storage/s3_client.hpp"

#include "support/expect_error.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

using keel::ErrorKind;
using keel::testing::error_message;
using keel::storage::S3Client;
using keel::storage::S3Config;
using keel::storage::S3Location;

namespace {

std::string env(const char* name) {
    const char* value = std::getenv(name);
    return value ? value : "";
}

class S3ClientTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (env("KEEL_TEST_S3_ENDPOINT").empty() || env("KEEL_TEST_S3_BUCKET").empty())
            GTEST_FAIL() << "no test S3 server: run this binary through tests/servers/with_servers.py --s3 -- <it> "
                            "(ctest -R storage.s3_client does)";
        bucket_ = env("KEEL_TEST_S3_BUCKET");
        // Every test gets its own prefix, so tests never see each other's objects.
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        prefix_ = std::string("s3://") + bucket_ + "/" + info->name() + "-" + std::to_string(getpid());
    }

    S3Config config() const {
        S3Config config = S3Config::from_env();
        EXPECT_EQ(config.endpoint, env("KEEL_TEST_S3_ENDPOINT"));
        return config;
    }
    S3Client client() const { return S3Client(config(), S3Location::parse(prefix_)); }

    std::string bucket_;
    std::string prefix_;
};

std::string random_bytes(size_t size, unsigned seed) {
    std::mt19937 random(seed);
    std::string out(size, '\0');
    for (auto& c : out) c = static_cast<char>(random());
    return out;
}

} // namespace

TEST_F(S3ClientTest, PutGetHeadRemove) {
    auto s3 = client();
    std::string etag = s3.put("greeting.txt", "hello");
    EXPECT_EQ(etag, "5d41402abc4b2a76b9719d911017c592");  // md5("hello")
    EXPECT_EQ(s3.get("greeting.txt"), "hello");
    auto info = s3.head("greeting.txt");
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->size, 5);
    EXPECT_EQ(info->etag, etag);

    s3.put("greeting.txt", "hello again");  // replaces
    EXPECT_EQ(s3.get("greeting.txt"), "hello again");

    s3.remove("greeting.txt");
    EXPECT_FALSE(s3.head("greeting.txt").has_value());
    auto message = error_message(ErrorKind::NotFound, [&] { s3.get("greeting.txt"); });
    EXPECT_NE(message.find("greeting.txt does not exist"), std::string::npos) << message;
    s3.remove("greeting.txt");  // removing a missing key is fine
}

TEST_F(S3ClientTest, BinaryAndEmptyPayloads) {
    auto s3 = client();
    std::string every_byte;
    for (int i = 0; i < 4096; ++i) every_byte += static_cast<char>(i % 256);
    const std::string large = random_bytes(3 << 20, 7);
    s3.put("bytes.bin", every_byte);
    s3.put("large.bin", large);
    s3.put("empty.bin", "");
    EXPECT_EQ(s3.get("bytes.bin"), every_byte);
    EXPECT_EQ(s3.get("large.bin"), large);
    EXPECT_EQ(s3.get("empty.bin"), "");
    EXPECT_EQ(s3.head("empty.bin")->size, 0);
    EXPECT_EQ(s3.head("large.bin")->size, 3 << 20);
}

namespace {

std::filesystem::path write_temp(const std::string& name, const std::string& bytes) {
    auto path = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(getpid()));
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
}

} // namespace

TEST_F(S3ClientTest, BigFilesGoUpInPartsAndComeBackInPieces) {
    S3Config c = config();
    c.part_size = 5 << 20;
    c.multipart_threshold = 6 << 20;
    S3Client s3(c, S3Location::parse(prefix_));
    const std::string big = random_bytes((17 << 20) + 123, 11);  // three whole parts and a short one
    const auto path = write_temp("big.bin", big);
    std::vector<int> parts;
    const std::string etag = s3.put_file("big.bin", path, [&](int done, int total) { parts.push_back(done * 100 + total); });
    EXPECT_EQ(parts, (std::vector<int>{104, 204, 304, 404}));
    EXPECT_TRUE(etag.ends_with("-4")) << etag;  // a multipart upload's ETag
    EXPECT_EQ(s3.file_etag(path), etag);       // how a commit knows the content is there already
    EXPECT_EQ(s3.head("big.bin")->size, int64_t(big.size()));
    // Last-Modified, from HEAD and from a listing: what `keel admin gc`'s grace period is measured by.
    const double now = double(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch()).count());
    EXPECT_NEAR(double(s3.head("big.bin")->modified_ms), now, 60'000.0);
    EXPECT_NEAR(double(s3.list("big")[0].modified_ms), now, 60'000.0);

    std::string back;
    std::vector<size_t> pieces;
    EXPECT_EQ(s3.get_to("big.bin", [&](std::string_view piece) {
        pieces.push_back(piece.size());
        back.append(piece);
    }), int64_t(big.size()));
    EXPECT_TRUE(back == big);
    EXPECT_EQ(pieces, (std::vector<size_t>{5 << 20, 5 << 20, 5 << 20, (2 << 20) + 123}));  // memory: a part at a time
    EXPECT_TRUE(s3.list_uploads().empty());

    // At or below the threshold: one PUT, its ETag the MD5; an empty object streams as nothing.
    const auto small = write_temp("small.bin", "small");
    const std::string md5_of_small = "eb5c1399a871211c7e7ed732d15e3a8b";  // `printf small | md5sum`
    EXPECT_EQ(s3.put_file("small.bin", small), md5_of_small);
    EXPECT_EQ(s3.file_etag(small), md5_of_small);
    s3.put("empty.bin", "");
    std::string empty = "x";
    EXPECT_EQ(s3.get_to("empty.bin", [&](std::string_view piece) { empty = piece; }), 0);
    EXPECT_EQ(empty, "");
    error_message(ErrorKind::NotFound, [&] { s3.get_to("missing.bin", [](std::string_view) {}); });
    std::filesystem::remove(path);
    std::filesystem::remove(small);
}

TEST_F(S3ClientTest, AFailedMultipartUploadIsAbortedAndLeavesNoParts) {
    S3Config c = config();
    c.part_size = 5 << 20;
    c.multipart_threshold = 5 << 20;
    S3Client s3(c, S3Location::parse(prefix_));
    const auto path = write_temp("doomed.bin", random_bytes(12 << 20, 5));
    std::vector<keel::storage::S3Upload> in_flight;
    auto message = error_message(ErrorKind::Unavailable, [&] {
        s3.put_file("doomed.bin", path, [&](int done, int) {
            if (done < 2) return;
            in_flight = s3.list_uploads();  // while it runs, the upload is listed
            keel::throw_error(ErrorKind::Unavailable, "the network went away after part 2");
        });
    });
    ASSERT_EQ(in_flight.size(), 1u);
    EXPECT_EQ(in_flight[0].key, "doomed.bin");
    EXPECT_NEAR(double(in_flight[0].initiated_ms), double(std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count()), 60'000.0);
    EXPECT_NE(message.find("after part 2"), std::string::npos) << message;
    EXPECT_FALSE(s3.head("doomed.bin").has_value());  // no half object
    EXPECT_TRUE(s3.list_uploads().empty());           // and no parts left behind

    std::filesystem::remove(path);
}

TEST_F(S3ClientTest, KeysWithCharactersThatNeedEncoding) {
    auto s3 = client();
    const std::string key = "dir/with space/\xc3\xa4 plus+equals=amp&percent%25(1)~.bin";
    s3.put(key, "odd");
    EXPECT_EQ(s3.get(key), "odd");
    auto listed = s3.list("dir/");
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].key, key);
}

TEST_F(S3ClientTest, GetRange) {
    auto s3 = client();
    std::string data;
    for (int i = 0; i < 100; ++i) data += static_cast<char>('a' + i % 26);
    s3.put("range.txt", data);
    EXPECT_EQ(s3.get_range("range.txt", 10, 5), data.substr(10, 5));
    EXPECT_EQ(s3.get_range("range.txt", 0, 100), data);
    EXPECT_EQ(s3.get_range("range.txt", 95, 10), data.substr(95));  // fewer at the end
    EXPECT_EQ(s3.get_range("range.txt", 3, 0), "");
    auto message = error_message(ErrorKind::InvalidArgument, [&] { s3.get_range("range.txt", 100, 1); });
    EXPECT_NE(message.find("past the end"), std::string::npos) << message;
    error_message(ErrorKind::NotFound, [&] { s3.get_range("missing.txt", 0, 1); });
}

TEST_F(S3ClientTest, ListReadsEveryPage) {
    S3Config small = config();
    small.list_page_size = 7;  // 25 keys: four pages
    S3Client s3(small, S3Location::parse(prefix_));
    std::vector<std::string> expected;
    for (int i = 0; i < 25; ++i) {
        char key[32];
        std::snprintf(key, sizeof key, "batch/part-%03d", i);
        s3.put(key, std::to_string(i));
        expected.push_back(key);
    }
    s3.put("other/outside", "x");
    auto listed = s3.list("batch/");
    ASSERT_EQ(listed.size(), expected.size());
    for (size_t i = 0; i < listed.size(); ++i) {
        EXPECT_EQ(listed[i].key, expected[i]);
        EXPECT_EQ(listed[i].size, static_cast<int64_t>(std::to_string(i).size()));
        EXPECT_EQ(listed[i].etag.size(), 32u);
    }
    EXPECT_EQ(s3.list().size(), 26u);
    EXPECT_TRUE(s3.list("nothing-here/").empty());
}

TEST_F(S3ClientTest, LocationPrefixesKeepClientsApart) {
    S3Client a(config(), S3Location::parse(prefix_ + "/a"));
    S3Client b(config(), S3Location::parse(prefix_ + "/b"));
    a.put("k", "from a");
    b.put("k", "from b");
    EXPECT_EQ(a.get("k"), "from a");
    EXPECT_EQ(b.get("k"), "from b");
    ASSERT_EQ(a.list().size(), 1u);
    EXPECT_EQ(a.list()[0].key, "k");
}

TEST_F(S3ClientTest, PutIfAbsent) {
    auto s3 = client();
    EXPECT_TRUE(s3.put_if_absent("once", "first"));
    EXPECT_FALSE(s3.put_if_absent("once", "second"));
    EXPECT_EQ(s3.get("once"), "first");
}

TEST_F(S3ClientTest, ConcurrentPutsShareThePool) {
    auto s3 = client();
    constexpr int threads = 8, per_thread = 20;
    std::vector<std::thread> workers;
    std::atomic<int> failures{0};
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                try {
                    std::string key = "t" + std::to_string(t) + "/" + std::to_string(i);
                    s3.put(key, random_bytes(1000 + i, t * 100 + i));
                    if (s3.get(key) != random_bytes(1000 + i, t * 100 + i)) ++failures;
                } catch (const std::exception& e) {
                    ADD_FAILURE() << e.what();
                    ++failures;
                }
            }
        });
    }
    for (auto& w : workers) w.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(s3.list().size(), static_cast<size_t>(threads * per_thread));
}

TEST_F(S3ClientTest, WrongSecretIsRefusedNamingTheAccessKey) {
    S3Config wrong = config();
    wrong.secret_key = "not-the-secret";
    S3Client s3(wrong, S3Location::parse(prefix_));
    auto message = error_message(ErrorKind::PermissionDenied, [&] { s3.put("k", "v"); });
    EXPECT_NE(message.find("S3 refused the credentials for access key " + wrong.access_key +
                           ": check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"),
              std::string::npos)
        << message;
    EXPECT_EQ(message.find("not-the-secret"), std::string::npos) << "the secret must never be shown";
    error_message(ErrorKind::PermissionDenied, [&] { s3.get("k"); });
    error_message(ErrorKind::PermissionDenied, [&] { s3.check(); });
    error_message(ErrorKind::PermissionDenied, [&] { s3.head("k"); });  // HEAD has no body: check() says why
}

TEST_F(S3ClientTest, UnknownAccessKeyIsRefused) {
    S3Config wrong = config();
    wrong.access_key = "AKIANOSUCHKEY000";
    S3Client s3(wrong, S3Location::parse(prefix_));
    auto message = error_message(ErrorKind::PermissionDenied, [&] { s3.list(); });
    EXPECT_NE(message.find("access key AKIANOSUCHKEY000"), std::string::npos) << message;
}

TEST_F(S3ClientTest, MissingBucketIsNamed) {
    S3Client s3(config(), S3Location::parse("s3://keel-no-such-bucket/x"));
    const std::string expected = "bucket 'keel-no-such-bucket' does not exist at " + env("KEEL_TEST_S3_ENDPOINT");
    for (auto call : std::vector<std::function<void()>>{[&] { s3.get("k"); }, [&] { s3.put("k", "v"); },
                                                         [&] { s3.list(); }, [&] { s3.check(); }}) {
        auto message = error_message(ErrorKind::NotFound, call);
        EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
}

TEST_F(S3ClientTest, UnreachableEndpointFailsQuickly) {
    // A port nothing listens on: bind one, note it, close it.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t size = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size);
    close(fd);
    S3Config dead = config();
    dead.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    S3Client s3(dead, S3Location::parse(prefix_));
    auto start = std::chrono::steady_clock::now();
    auto message = error_message(ErrorKind::Unavailable, [&] { s3.get("k"); });
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    EXPECT_NE(message.find("cannot reach S3 at " + dead.endpoint + ": "), std::string::npos) << message;
    EXPECT_NE(message.find("check AWS_ENDPOINT_URL"), std::string::npos) << message;
}

// ------------------------------------------------------------------- scripted server: retries, timeouts

namespace {

//! One scripted answer: its bytes (none: hold the connection and never answer), and whether the
//! server closes the connection after sending it (without saying so in a header).
struct Answer {
    std::string bytes;
    bool close_after = false;
};

Answer answer(int status, const std::string& reason, const std::string& body, bool close_after = false) {
    return {"HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\n\r\n" + body,
            close_after};
}

//! Listens on a loopback port and answers each request it reads with the next scripted answer (the
//! last one repeats). Counts the requests.
class ScriptedServer {
public:
    explicit ScriptedServer(std::vector<Answer> answers) : answers_(std::move(answers)) {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        socklen_t size = sizeof addr;
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &size);
        port_ = ntohs(addr.sin_port);
        listen(fd_, 16);
        thread_ = std::thread([this] { serve(); });
    }
    ~ScriptedServer() {
        shutdown(fd_, SHUT_RDWR);  // ends the accept() of serve()
        thread_.join();
        close(fd_);
        for (int c : held_) close(c);
    }
    std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
    int requests() const { return requests_.load(); }

private:
    void serve() {
        while (true) {
            int client = accept(fd_, nullptr, nullptr);
            if (client < 0) return;
            std::string buffer;
            char chunk[4096];
            bool hold = false, closed = false;
            while (true) {
                auto end = buffer.find("\r\n\r\n");
                if (end != std::string::npos) {  // the requests here have no body
                    buffer.erase(0, end + 4);
                    size_t index = static_cast<size_t>(requests_++);
                    const Answer& a = answers_[std::min(index, answers_.size() - 1)];
                    if (a.bytes.empty()) {
                        hold = true;
                        break;
                    }
                    send(client, a.bytes.data(), a.bytes.size(), MSG_NOSIGNAL);
                    if (a.close_after) {
                        close(client);
                        closed = true;
                        break;
                    }
                    continue;
                }
                ssize_t n = recv(client, chunk, sizeof chunk, 0);
                if (n <= 0) break;
                buffer.append(chunk, static_cast<size_t>(n));
            }
            if (hold) held_.push_back(client);  // closed by the destructor: this request gets no answer
            else if (!closed) close(client);
        }
    }

    std::vector<Answer> answers_;
    int fd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
    std::atomic<int> requests_{0};
    std::vector<int> held_;
};

S3Config scripted_config(const std::string& endpoint) {
    S3Config config;
    config.endpoint = endpoint;
    config.path_style = true;
    config.access_key = "AKIATEST";
    config.secret_key = "secret";
    config.retry_base_delay = std::chrono::milliseconds(5);
    return config;
}

} // namespace

TEST(S3ClientRetries, ThrottlingAndServerErrorsAreRetried) {
    const Answer slow_down = answer(503, "Slow Down", "<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>");
    ScriptedServer server({slow_down, answer(500, "Internal Server Error", ""), answer(200, "OK", "payload")});
    S3Client s3(scripted_config(server.endpoint()), S3Location::parse("s3://bucket/p"));
    EXPECT_EQ(s3.get("k"), "payload");
    EXPECT_EQ(server.requests(), 3);
}

TEST(S3ClientRetries, GivesUpAfterMaxAttemptsSayingWhy) {
    ScriptedServer server({answer(503, "Slow Down", "<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>")});
    S3Config config = scripted_config(server.endpoint());
    config.max_attempts = 3;
    S3Client s3(config, S3Location::parse("s3://bucket/p"));
    auto message = error_message(ErrorKind::Unavailable, [&] { s3.get("k"); });
    EXPECT_EQ(server.requests(), 3);
    EXPECT_NE(message.find("kept failing GET of s3://bucket/p/k (3 attempts): SlowDown: Reduce your request rate."),
              std::string::npos)
        << message;
}

TEST(S3ClientRetries, BytesDamagedOnTheWayAreSentAgainThenCorrupt) {
    // S3 checks each upload against its Content-MD5 and answers BadDigest when they differ.
    const Answer bad_digest = answer(400, "Bad Request", "<Error><Code>BadDigest</Code><Message>The Content-MD5 you "
                                                          "specified did not match what we received.</Message></Error>");
    {
        ScriptedServer server({bad_digest, answer(200, "OK", "")});
        S3Client s3(scripted_config(server.endpoint()), S3Location::parse("s3://bucket/p"));
        s3.put("k", "v");
        EXPECT_EQ(server.requests(), 2);
    }
    ScriptedServer server({bad_digest});
    S3Client s3(scripted_config(server.endpoint()), S3Location::parse("s3://bucket/p"));
    auto message = error_message(ErrorKind::Corrupt, [&] { s3.put("k", "v"); });
    EXPECT_EQ(server.requests(), 4);
    EXPECT_NE(message.find("S3 received other bytes than were sent for PUT of s3://bucket/p/k, 4 times in a row"),
              std::string::npos)
        << message;
}

TEST(S3ClientRetries, AServerThatNeverAnswersTimesOut) {
    ScriptedServer server({Answer{}});
    S3Config config = scripted_config(server.endpoint());
    config.request_timeout = std::chrono::milliseconds(300);
    config.max_attempts = 2;
    S3Client s3(config, S3Location::parse("s3://bucket/p"));
    auto start = std::chrono::steady_clock::now();
    auto message = error_message(ErrorKind::Unavailable, [&] { s3.get("k"); });
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
    EXPECT_NE(message.find("got no complete answer"), std::string::npos) << message;
    EXPECT_NE(message.find("after 2 attempts"), std::string::npos) << message;
}

TEST(S3ClientRetries, AKeptAliveConnectionTheServerClosedIsReplacedAtOnce) {
    // The server closes the connection after its first answer without saying so; the client kept it
    // for reuse, finds it dead on the next request and sends that at once on a new connection, which
    // does not count as an attempt.
    ScriptedServer server({answer(200, "OK", "one", true), answer(200, "OK", "two")});
    S3Config config = scripted_config(server.endpoint());
    config.max_attempts = 1;
    S3Client s3(config, S3Location::parse("s3://bucket/p"));
    EXPECT_EQ(s3.get("a"), "one");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the close reaches the client
    EXPECT_EQ(s3.get("b"), "two");
    EXPECT_EQ(server.requests(), 2);
}

// ------------------------------------------------------------------- TLS: verified, or refused clearly

namespace {

//! A self-signed certificate for "localhost" (key and certificate as PEM files in a temp folder) and
//! a one-thread TLS server on a loopback port that answers every request with one canned answer.
class TlsServer {
public:
    TlsServer() {
        dir_ = std::filesystem::temp_directory_path() / ("keel-s3-tls-" + std::to_string(getpid()));
        std::filesystem::create_directories(dir_);
        EVP_PKEY* key = EVP_RSA_gen(2048);
        X509* cert = X509_new();
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
        X509_gmtime_adj(X509_getm_notBefore(cert), -60);
        X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
        X509_set_pubkey(cert, key);
        X509_NAME* name = X509_get_subject_name(cert);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
        X509_set_issuer_name(cert, name);
        X509V3_CTX v3;
        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
        X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, "DNS:localhost");
        X509_add_ext(cert, san, -1);
        X509_EXTENSION_free(san);
        X509_sign(cert, key, EVP_sha256());
        FILE* f = std::fopen(ca_file().c_str(), "w");
        PEM_write_X509(f, cert);
        std::fclose(f);

        ctx_ = SSL_CTX_new(TLS_server_method());
        SSL_CTX_use_certificate(ctx_, cert);
        SSL_CTX_use_PrivateKey(ctx_, key);
        X509_free(cert);
        EVP_PKEY_free(key);

        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        socklen_t size = sizeof addr;
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &size);
        port_ = ntohs(addr.sin_port);
        listen(fd_, 16);
        thread_ = std::thread([this] { serve(); });
    }
    ~TlsServer() {
        shutdown(fd_, SHUT_RDWR);
        thread_.join();
        close(fd_);
        SSL_CTX_free(ctx_);
        std::filesystem::remove_all(dir_);
    }
    std::string ca_file() const { return (dir_ / "ca.pem").string(); }
    uint16_t port() const { return port_; }

private:
    void serve() {
        while (true) {
            int client = accept(fd_, nullptr, nullptr);
            if (client < 0) return;
            SSL* ssl = SSL_new(ctx_);
            SSL_set_fd(ssl, client);
            if (SSL_accept(ssl) == 1) {
                std::string request;
                char chunk[4096];
                int n;
                while (request.find("\r\n\r\n") == std::string::npos && (n = SSL_read(ssl, chunk, sizeof chunk)) > 0)
                    request.append(chunk, static_cast<size_t>(n));
                const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecret";
                SSL_write(ssl, reply.data(), static_cast<int>(reply.size()));
                SSL_shutdown(ssl);
            }
            SSL_free(ssl);
            close(client);
        }
    }

    std::filesystem::path dir_;
    SSL_CTX* ctx_ = nullptr;
    int fd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
};

} // namespace

TEST(S3ClientTls, VerifiesTheServerCertificate) {
    TlsServer server;
    S3Config config = scripted_config("https://localhost:" + std::to_string(server.port()));
    config.ca_file = server.ca_file();
    EXPECT_EQ(S3Client(config, S3Location::parse("s3://bucket/p")).get("k"), "secret");

    // Not trusted by this machine: refused, saying where a private authority goes.
    config.ca_file = "/etc/ssl/certs/ca-certificates.crt";
    if (std::filesystem::exists(config.ca_file)) {
        auto message = error_message(ErrorKind::Unavailable,
                                     [&] { S3Client(config, S3Location::parse("s3://bucket/p")).get("k"); });
        EXPECT_NE(message.find("certificate verify failed"), std::string::npos) << message;
        EXPECT_NE(message.find("AWS_CA_BUNDLE"), std::string::npos) << message;
    }

    // Trusted, but issued for another name than the one connected to.
    config = scripted_config("https://127.0.0.1:" + std::to_string(server.port()));
    config.ca_file = server.ca_file();
    error_message(ErrorKind::Unavailable, [&] { S3Client(config, S3Location::parse("s3://bucket/p")).get("k"); });
}
