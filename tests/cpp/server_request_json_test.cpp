// tests/cpp/server_request_json_test.cpp: the predict body parser of `keel serve`
// (core/server/request_json.cpp): one request or a batch, every scalar kind, escapes, and every
// refusal with the message that names what is wrong.
#include "keel/server/request_json.hpp"

#include "keel/common/error.hpp"

#include "support/count_allocations.hpp"
#include "support/expect_error.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

using keel::ErrorKind;
using keel::server::parse_predict_body;
using keel::server::ParsedRequests;
using keel::server::RequestLimits;
using keel::plugins::Field;
using keel::testing::error_message;

namespace {

// The message of the InvalidArgument the body is refused with.
std::string refusal(std::string_view body, const RequestLimits& limits = {}) {
    return error_message(ErrorKind::InvalidArgument, [&] { parse_predict_body(body, limits); });
}

template <typename T>
T get(const Field& f) {
    EXPECT_TRUE(std::holds_alternative<T>(f.value)) << "field " << f.name << " index " << f.value.index();
    return std::holds_alternative<T>(f.value) ? std::get<T>(f.value) : T{};
}

std::string_view str(const Field& f) { return get<std::string_view>(f); }

// A one-field request whose value is `json`; the parsed field.
// The body lives until the next call (fields point into it).
Field one(const std::string& json, ParsedRequests& keep) {
    static thread_local std::string body;
    body = "{\"v\": " + json + "}";
    keep = parse_predict_body(body);
    EXPECT_EQ(keep.rows.size(), 1u);
    EXPECT_EQ(keep.rows[0].size(), 1u);
    return keep.rows[0][0];
}

} // namespace

TEST(RequestJson, OneObjectIsOneRequestOfEveryScalarKind) {
    const std::string body =
        R"({"player_id": 42, "country": "fr", "score": 0.5, "vip": true, "banned": false, "ref": null})";
    auto r = parse_predict_body(body);
    EXPECT_FALSE(r.batch);
    ASSERT_EQ(r.rows.size(), 1u);
    const auto& row = r.rows[0];
    ASSERT_EQ(row.size(), 6u);
    EXPECT_EQ(row[0].name, "player_id");
    EXPECT_EQ(get<int64_t>(row[0]), 42);
    EXPECT_EQ(row[1].name, "country");
    EXPECT_EQ(str(row[1]), "fr");
    EXPECT_EQ(get<double>(row[2]), 0.5);
    EXPECT_TRUE(get<bool>(row[3]));
    EXPECT_FALSE(get<bool>(row[4]));
    EXPECT_TRUE(std::holds_alternative<std::monostate>(row[5].value));
    EXPECT_TRUE(r.text.empty()) << "no escape, nothing copied";
}

TEST(RequestJson, StringsWithoutEscapesPointIntoTheBody) {
    const std::string body = R"({"country": "fr"})";
    auto r = parse_predict_body(body);
    const auto& f = r.rows[0][0];
    EXPECT_GE(f.name.data(), body.data());
    EXPECT_LT(str(f).data(), body.data() + body.size());
}

TEST(RequestJson, AListIsABatchInOrder) {
    auto r = parse_predict_body(R"([{"id": 1, "c": "a"}, {"id": 2}, {}])");
    EXPECT_TRUE(r.batch);
    ASSERT_EQ(r.rows.size(), 3u);
    EXPECT_EQ(get<int64_t>(r.rows[0][0]), 1);
    EXPECT_EQ(str(r.rows[0][1]), "a");
    EXPECT_EQ(get<int64_t>(r.rows[1][0]), 2);
    EXPECT_TRUE(r.rows[2].empty()) << "an empty request is a request; the endpoint names what it lacks";
}

TEST(RequestJson, AnEmptyObjectIsOneRequestWithoutFields) {
    auto r = parse_predict_body("{}");
    ASSERT_EQ(r.rows.size(), 1u);
    EXPECT_TRUE(r.rows[0].empty());
}

TEST(RequestJson, WhitespaceIsAllowedEverywhereJsonAllowsIt) {
    auto r = parse_predict_body(" \t\r\n[ \n{ \"a\" \t: \r1 , \"b\"\n:\"x\" } ,\t{\"a\":2}\n] \r\n\t");
    ASSERT_EQ(r.rows.size(), 2u);
    EXPECT_EQ(get<int64_t>(r.rows[0][0]), 1);
    EXPECT_EQ(str(r.rows[0][1]), "x");
    EXPECT_EQ(get<int64_t>(r.rows[1][0]), 2);
}

TEST(RequestJson, OtherWhitespaceIsRefused) {
    EXPECT_NE(refusal("{\"a\":\f1}").find("field 'a'"), std::string::npos);
    EXPECT_NE(refusal("\v{}").find("expected a request object"), std::string::npos);
    EXPECT_NE(refusal("{\"a\":1}\xc2\xa0").find("after the body"), std::string::npos);
}

TEST(RequestJson, IntegersFillInt64ToItsBounds) {
    ParsedRequests keep;
    EXPECT_EQ(get<int64_t>(one("0", keep)), 0);
    EXPECT_EQ(get<int64_t>(one("-0", keep)), 0);
    EXPECT_EQ(get<int64_t>(one("-17", keep)), -17);
    EXPECT_EQ(get<int64_t>(one("9223372036854775807", keep)), std::numeric_limits<int64_t>::max());
    EXPECT_EQ(get<int64_t>(one("-9223372036854775808", keep)), std::numeric_limits<int64_t>::min());
}

TEST(RequestJson, IntegersBeyondInt64AreRefusedNamingTheField) {
    for (const char* big : {"9223372036854775808", "-9223372036854775809", "18446744073709551616",
                            "18446744073709551617", "123456789012345678901234567890"}) {
        const auto msg = refusal(std::string(R"({"player_id": )") + big + "}");
        EXPECT_NE(msg.find("field 'player_id'"), std::string::npos) << msg;
        EXPECT_NE(msg.find("beyond the 64-bit integer range"), std::string::npos) << msg;
        EXPECT_NE(msg.find(big), std::string::npos) << msg;
        EXPECT_NE(msg.find("byte 14"), std::string::npos) << msg;
    }
}

TEST(RequestJson, FractionsAndExponentsAreDoublesThatRoundTrip) {
    ParsedRequests keep;
    EXPECT_EQ(get<double>(one("0.1", keep)), 0.1);
    EXPECT_EQ(get<double>(one("-2.5e-3", keep)), -2.5e-3);
    EXPECT_EQ(get<double>(one("1E2", keep)), 100.0);
    EXPECT_EQ(get<double>(one("1e+2", keep)), 100.0);
    EXPECT_EQ(get<double>(one("1.0", keep)), 1.0) << "a fraction makes a double even when whole";
    EXPECT_EQ(get<double>(one("1e308", keep)), 1e308);
    EXPECT_EQ(get<double>(one("1.7976931348623157e308", keep)), std::numeric_limits<double>::max());
    EXPECT_EQ(get<double>(one("0.30000000000000004", keep)), 0.30000000000000004);
    EXPECT_EQ(get<double>(one("4.9e-324", keep)), std::numeric_limits<double>::denorm_min());
}

TEST(RequestJson, NumbersBelowTheSmallestDoubleRoundToZero) {
    ParsedRequests keep;
    EXPECT_EQ(get<double>(one("1e-400", keep)), 0.0);
    const double neg = get<double>(one("-0.0000000000000000000000000000000000000000000001e-300", keep));
    EXPECT_EQ(neg, 0.0);
    EXPECT_TRUE(std::signbit(neg));
}

TEST(RequestJson, DoublesBeyondRangeAreRefusedNamingTheField) {
    for (const char* huge : {"1e309", "-1e309", "1.8e308", "100000000000000000000e300", "1e99999999999999999999"}) {
        const auto msg = refusal(std::string(R"({"score": )") + huge + "}");
        EXPECT_NE(msg.find("field 'score'"), std::string::npos) << msg;
        EXPECT_NE(msg.find("beyond the range of a 64-bit float"), std::string::npos) << msg;
    }
}

TEST(RequestJson, NumbersOutsideTheJsonGrammarAreRefused) {
    EXPECT_NE(refusal(R"({"n": 012})").find("leading zero"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": -01})").find("leading zero"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": +1})").find("field 'n' holds '+'"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": .5})").find("field 'n' holds '.'"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": 1.})").find("no digit after '.'"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": 1e})").find("no digit in its exponent"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": 1e+})").find("no digit in its exponent"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": -})").find("'-' without digits"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": NaN})").find("field 'n' holds 'N'"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": Infinity})").find("field 'n' holds 'I'"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": -Infinity})").find("'-' without digits"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": 0x1F})").find("field 'n' is followed by 'x'"), std::string::npos);
    EXPECT_NE(refusal(R"({"n": 1.5.2})").find("field 'n' is followed by '.'"), std::string::npos);
}

TEST(RequestJson, LiteralsAreLowerCaseAndWhole) {
    EXPECT_NE(refusal(R"({"b": True})").find("field 'b' holds 'T'"), std::string::npos);
    EXPECT_NE(refusal(R"({"b": tru})").find("field 'b' holds an unknown word"), std::string::npos);
    EXPECT_NE(refusal(R"({"b": nul)").find("field 'b' holds an unknown word"), std::string::npos);
    EXPECT_NE(refusal(R"({"b": truex})").find("field 'b' is followed by 'x'"), std::string::npos);
}

TEST(RequestJson, EscapesAreUnescapedIntoText) {
    ParsedRequests keep;
    EXPECT_EQ(str(one(R"("a\"b\\c\/d\be\ff\ng\rh\ti")", keep)), "a\"b\\c/d\be\ff\ng\rh\ti");
    EXPECT_EQ(keep.text.size(), 1u);
    EXPECT_EQ(str(one(R"("\u0041\u00e9\u20AC")", keep)), "A\xc3\xa9\xe2\x82\xac");
    EXPECT_EQ(str(one(R"("\ud83d\ude00!")", keep)), "\xf0\x9f\x98\x80!") << "a surrogate pair is one code point";
    EXPECT_EQ(str(one(R"("\uDBFF\uDFFF")", keep)), "\xf4\x8f\xbf\xbf");
    EXPECT_EQ(str(one(R"("nul\u0000byte")", keep)), std::string_view("nul\0byte", 8));
    EXPECT_EQ(str(one("\"\\n caf\xc3\xa9\"", keep)), "\n caf\xc3\xa9") << "UTF-8 after the first escape is kept";
}

TEST(RequestJson, EscapedNamesAreUnescapedAndCompared) {
    auto r = parse_predict_body(R"({"pl\u0061yer": 1, "b": "x"})");
    EXPECT_EQ(r.rows[0][0].name, "player");
    const auto msg = refusal(R"({"player": 1, "pl\u0061yer": 2})");
    EXPECT_NE(msg.find("field 'player' appears twice"), std::string::npos) << msg;
}

TEST(RequestJson, TextStaysValidWhenTheResultIsMoved) {
    std::string body = R"([{"a\u0041": "\u00e9"}, {"b\n": "x\ty"}])";
    for (int i = 0; i < 40; ++i) body.insert(body.size() - 1, R"(, {"s\u0041": "long enough to leave the small string buffer\u0021"})");
    auto r = parse_predict_body(body);
    ParsedRequests moved = std::move(r);
    ParsedRequests assigned;
    assigned = std::move(moved);
    EXPECT_EQ(assigned.rows[0][0].name, "aA");
    EXPECT_EQ(str(assigned.rows[0][0]), "\xc3\xa9");
    EXPECT_EQ(assigned.rows[1][0].name, "b\n");
    EXPECT_EQ(str(assigned.rows[41][0]), "long enough to leave the small string buffer!");
}

TEST(RequestJson, LoneSurrogatesAreRefused) {
    for (const char* s : {R"("\ud83d")", R"("\ud83dx")", R"("\ud83d\u0041")", R"("\ude00")", R"("\ud83d\ud83d")"}) {
        const auto msg = refusal(std::string(R"({"name": )") + s + "}");
        EXPECT_NE(msg.find("field 'name' (a string) holds a lone surrogate"), std::string::npos) << msg;
    }
}

TEST(RequestJson, BadEscapesAreRefused) {
    EXPECT_NE(refusal(R"({"s": "\x41"})").find("unknown escape after '\\' ('x')"), std::string::npos);
    EXPECT_NE(refusal(R"({"s": "\u12"})").find("without four hex digits"), std::string::npos);
    EXPECT_NE(refusal(R"({"s": "\u12g4"})").find("without four hex digits"), std::string::npos);
    EXPECT_NE(refusal(R"({"s": "\u12)").find("cut short"), std::string::npos);
    EXPECT_NE(refusal(R"({"s": "abc\)").find("ends inside an escape"), std::string::npos);
    EXPECT_NE(refusal(R"({"k\q": 1})").find("a field name holds an unknown escape"), std::string::npos);
}

TEST(RequestJson, RawControlCharactersAreRefused) {
    auto msg = refusal("{\"s\": \"a\nb\"}");
    EXPECT_NE(msg.find("field 's' (a string) holds a raw control character 0x0a"), std::string::npos) << msg;
    EXPECT_NE(msg.find("byte 8"), std::string::npos) << msg;
    msg = refusal(std::string("{\"a\0b\": 1}", 10));
    EXPECT_NE(msg.find("a field name holds a raw control character 0x00"), std::string::npos) << msg;
    msg = refusal("{\"s\": \"\\n\tb\"}");
    EXPECT_NE(msg.find("raw control character 0x09"), std::string::npos) << "also after an escape: " << msg;
}

TEST(RequestJson, InvalidUtf8IsRefused) {
    for (const char* bad : {"\xff", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80", "\xed\xbf\xbf",
                            "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\x80", "\xc3", "\xe2\x82",
                            "\xc3\x28", "\xe2\x28\xa1"}) {
        auto msg = refusal(std::string(R"({"s": "a)") + bad + "\"}");
        EXPECT_NE(msg.find("field 's' (a string) holds invalid UTF-8"), std::string::npos) << msg;
        EXPECT_NE(msg.find("byte 8 "), std::string::npos) << msg;
        msg = refusal(std::string(R"({"s": "\n)") + bad + "\"}");
        EXPECT_NE(msg.find("holds invalid UTF-8"), std::string::npos) << "after an escape: " << msg;
        msg = refusal(std::string(R"({")") + bad + "\": 1}");
        EXPECT_NE(msg.find("a field name holds invalid UTF-8"), std::string::npos) << msg;
    }
    auto msg = refusal("{\"s\": \"\xc3");
    EXPECT_NE(msg.find("invalid UTF-8"), std::string::npos) << "a sequence cut by the end of the body: " << msg;
}

TEST(RequestJson, ValidUtf8OfEveryLengthIsKept) {
    ParsedRequests keep;
    const std::string s = "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf";
    EXPECT_EQ(str(one("\"" + s + "\"", keep)), s);
}

TEST(RequestJson, NestedValuesAreRefusedNamingTheField) {
    auto msg = refusal(R"({"x": {"y": 1}})");
    EXPECT_NE(msg.find("field 'x' holds an object: request fields are numbers, strings, booleans or null"),
              std::string::npos) << msg;
    EXPECT_NE(msg.find("byte 6"), std::string::npos) << msg;
    msg = refusal(R"([{"a": 1}, {"tags": [1, 2]}])");
    EXPECT_NE(msg.find("request 1: field 'tags' holds a list"), std::string::npos) << msg;
}

TEST(RequestJson, DeepNestingIsRefusedAtOnce) {
    const std::string lists(100'000, '[');
    const auto started = std::chrono::steady_clock::now();
    auto msg = refusal(lists);
    EXPECT_NE(msg.find("request 0: expected a request object '{', found '['"), std::string::npos) << msg;
    EXPECT_NE(msg.find("byte 1 "), std::string::npos) << msg;
    std::string objects = "{";
    for (int i = 0; i < 100'000; ++i) objects += "\"a\":{";
    msg = refusal(objects);
    EXPECT_NE(msg.find("field 'a' holds an object"), std::string::npos) << msg;
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(100));
}

TEST(RequestJson, TheTopLevelMustBeAnObjectOrAListOfThem) {
    EXPECT_NE(refusal("").find("an empty body"), std::string::npos);
    EXPECT_NE(refusal("  \n").find("an empty body"), std::string::npos);
    EXPECT_NE(refusal("[]").find("an empty batch: send at least one request"), std::string::npos);
    EXPECT_NE(refusal("[ \n ]").find("an empty batch: send at least one request"), std::string::npos);
    EXPECT_NE(refusal("42").find("expected a request object '{' or a list of them '[', found '4'"), std::string::npos);
    EXPECT_NE(refusal("\"x\"").find("found '\"'"), std::string::npos);
    EXPECT_NE(refusal("[1]").find("request 0: expected a request object '{', found '1'"), std::string::npos);
    EXPECT_NE(refusal(R"([{}, null])").find("request 1: expected a request object"), std::string::npos);
}

TEST(RequestJson, TrailingBytesAreRefused) {
    auto msg = refusal(R"({"a": 1} x)");
    EXPECT_NE(msg.find("unexpected 'x' after the body"), std::string::npos) << msg;
    EXPECT_NE(msg.find("byte 9"), std::string::npos) << msg;
    EXPECT_NE(refusal(R"({"a": 1}{"a": 2})").find("unexpected '{' after the body"), std::string::npos);
    EXPECT_NE(refusal(R"([{"a": 1}]])").find("unexpected ']' after the body"), std::string::npos);
    EXPECT_NE(refusal(std::string("{}\0", 3)).find("unexpected byte 0x00"), std::string::npos);
}

TEST(RequestJson, BrokenStructureIsRefusedSayingWhatWasExpected) {
    EXPECT_NE(refusal(R"({"a" 1})").find("field 'a' is followed by '1': expected ':'"), std::string::npos);
    EXPECT_NE(refusal(R"({"a": 1 "b": 2})").find("field 'a' is followed by '\"': expected ',' or '}'"),
              std::string::npos);
    EXPECT_NE(refusal(R"({"a": 1,})").find("expected a field name in double quotes, found '}'"), std::string::npos);
    EXPECT_NE(refusal(R"({a: 1})").find("expected a field name in double quotes, found 'a'"), std::string::npos);
    EXPECT_NE(refusal(R"({'a': 1})").find("found '''"), std::string::npos);
    EXPECT_NE(refusal(R"({"a":)").find("field 'a' has no value"), std::string::npos);
    EXPECT_NE(refusal(R"({"a")").find("field 'a' ends the body"), std::string::npos);
    EXPECT_NE(refusal(R"({"a": 1)").find("field 'a' ends the body: expected ',' or '}'"), std::string::npos);
    EXPECT_NE(refusal(R"({"a": "x)").find("field 'a' (a string) is not closed"), std::string::npos);
    EXPECT_NE(refusal(R"({"ab)").find("a field name is not closed"), std::string::npos);
    EXPECT_NE(refusal(R"({)").find("ends where a field name was expected"), std::string::npos);
    EXPECT_NE(refusal(R"([{"a": 1})").find("ends inside the list of requests"), std::string::npos);
    EXPECT_NE(refusal(R"([{"a": 1},)").find("request 1: the body ends where a request object"), std::string::npos);
    EXPECT_NE(refusal(R"([{"a": 1},])").find("request 1: expected a request object '{', found ']'"),
              std::string::npos);
    EXPECT_NE(refusal(R"([{"a": 1} {"a": 2}])").find("expected ',' or ']' after a request, found '{'"),
              std::string::npos);
}

TEST(RequestJson, ErrorsInABatchNameTheRequestCountingFromZero) {
    const auto msg = refusal(R"([{"id": 1}, {"id": 2}, {"id": 3}, {"id": 1e999}])");
    EXPECT_EQ(msg.rfind("request 3: field 'id' holds 1e999", 0), 0u) << msg;
    EXPECT_NE(msg.find("(byte 41 of the body)"), std::string::npos) << msg;
}

TEST(RequestJson, DuplicateFieldsAreRefusedNamingTheField) {
    auto msg = refusal(R"({"a": 1, "b": 2, "a": 3})");
    EXPECT_NE(msg.find("field 'a' appears twice in one request"), std::string::npos) << msg;
    EXPECT_NE(msg.find("byte 17"), std::string::npos) << msg;
    msg = refusal(R"([{"a": 1}, {"a": 1, "a": 1}])");
    EXPECT_NE(msg.find("request 1: field 'a' appears twice"), std::string::npos) << msg;
    // A wide request (checked by sorting) names the later duplicate too.
    std::string wide = "{";
    for (int i = 0; i < 100; ++i) wide += "\"f" + std::to_string(i) + "\": " + std::to_string(i) + ", ";
    const auto at = wide.size();
    wide += "\"f42\": 0}";
    msg = refusal(wide);
    EXPECT_NE(msg.find("field 'f42' appears twice"), std::string::npos) << msg;
    EXPECT_NE(msg.find("byte " + std::to_string(at) + " "), std::string::npos) << msg;
    wide.pop_back();
    wide.replace(at, 5, "\"f\\u0034\\u0032\"");  // the duplicate spelled with escapes
    msg = refusal(wide + "}");
    EXPECT_NE(msg.find("field 'f42' appears twice"), std::string::npos) << msg;
}

TEST(RequestJson, WideRequestsWithoutDuplicatesAreAccepted) {
    std::string wide = "{";
    for (int i = 0; i < 256; ++i) wide += (i ? ", \"f" : "\"f") + std::to_string(i) + "\": " + std::to_string(i);
    auto r = parse_predict_body(wide + "}");
    ASSERT_EQ(r.rows[0].size(), 256u);
    EXPECT_EQ(get<int64_t>(r.rows[0][255]), 255);
}

TEST(RequestJson, LimitsAreEnforcedNamingTheLimit) {
    RequestLimits limits;
    limits.max_rows = 2;
    limits.max_fields = 3;
    EXPECT_EQ(parse_predict_body(R"([{"a":1,"b":2,"c":3}, {}])", limits).rows.size(), 2u);
    auto msg = refusal(R"([{}, {}, {}])", limits);
    EXPECT_NE(msg.find("request 2: a batch of more than 2 requests: the server's limit max_rows is 2"),
              std::string::npos) << msg;
    msg = refusal(R"({"a":1,"b":2,"c":3,"d":4})", limits);
    EXPECT_NE(msg.find("more than 3 fields: the server's limit max_fields is 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("byte 19"), std::string::npos) << msg;
}

TEST(RequestJson, LongOrOddFieldNamesAreShownShortAndOnOneLine) {
    const std::string name(500, 'n');
    auto msg = refusal("{\"" + name + "\": [1]}");
    EXPECT_NE(msg.find("field '" + std::string(64, 'n') + "...' holds a list"), std::string::npos) << msg;
    msg = refusal(R"({"a\nb'c": {}})");
    EXPECT_NE(msg.find("field 'a\\u000ab\\'c' holds an object"), std::string::npos) << msg;
}

TEST(RequestJson, OnlyInvalidArgumentEscapes) {
    // A sweep of truncations of a body using every construct: each prefix fails cleanly or parses.
    const std::string body =
        "[{\"a\": -1.5e-3, \"b\\u00e9\": \"x\\ud83d\\ude00\xc3\xa9\", \"c\": true, \"d\": null, \"e\": 9}]";
    for (size_t n = 0; n < body.size(); ++n) {
        try {
            parse_predict_body(std::string_view(body).substr(0, n));
            ADD_FAILURE() << "prefix " << n << " accepted";
        } catch (const keel::Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();
        }
    }
    EXPECT_EQ(parse_predict_body(body).rows[0].size(), 5u);
}

TEST(RequestJson, ARequestWithoutEscapesAllocatesTheSameWhateverItsFieldCount) {
    const std::string small = R"({"player_id": 42, "country": "fr", "score": 0.5})";
    std::string wide = "{";
    for (int i = 0; i < 8; ++i) wide += (i ? ", \"f" : "\"f") + std::to_string(i) + "\": \"v\"";
    wide += "}";
    parse_predict_body(small);  // warm-up
    long before = g_allocations.load();
    { auto r = parse_predict_body(small); }
    const long small_allocs = g_allocations.load() - before;
    before = g_allocations.load();
    { auto r = parse_predict_body(wide); }
    EXPECT_EQ(g_allocations.load() - before, small_allocs) << "no allocation per field";
    EXPECT_LE(small_allocs, 4) << "rows, the row, and the text deque's map and first block";
}

TEST(RequestJson, ABatchOfEmptyRequestsReservesNoFields) {
    std::string batch = "[{}";
    for (int i = 1; i < 1000; ++i) batch += ",{}";
    batch += "]";
    const long before = g_allocations.load();
    auto r = parse_predict_body(batch);
    EXPECT_EQ(r.rows.size(), 1000u);
    EXPECT_LT(g_allocations.load() - before, 20) << "a row reserves what the one before it held";
}

TEST(RequestJson, MicroTimingOfAThreeFieldRequest) {
    const std::string body = R"({"player_id": 42, "country": "fr", "score": 0.5})";
    std::string batch = "[";
    for (int i = 0; i < 100; ++i) batch += (i ? ", " : "") + body;
    batch += "]";
    const int n = 200'000;
    size_t sink = 0;
    auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) sink += parse_predict_body(body).rows[0].size();
    const double one_ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - started).count() / n;
    started = std::chrono::steady_clock::now();
    for (int i = 0; i < n / 100; ++i) sink += parse_predict_body(batch).rows.size();
    const double row_ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - started).count() / n;
    std::printf("parse_predict_body: %.0f ns per 3-field request alone, %.0f ns per request in a batch of 100 "
                "(sink %zu)\n", one_ns, row_ns, sink);
    EXPECT_GT(sink, 0u);
}
