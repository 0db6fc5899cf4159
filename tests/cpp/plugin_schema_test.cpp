// tests/cpp/plugin_schema_test.cpp: a plugin's declared `schema` and `needs`, checked by the C++ host
// (check_arguments, the Router, plugin_needs) with the messages every caller sees.
#include "keel/common/error.hpp"
#include "keel/plugins/host.hpp"
#include "keel/plugins/router.hpp"
#include "keel/plugins/schema.hpp"

#include "support/expect_error.hpp"
#include "support/plugin_dir.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

namespace fs = std::filesystem;
using keel::Error;
using keel::ErrorKind;
using namespace keel::plugins;

using keel::testing::error_message;
using keel::testing::PluginDir;
using keel::testing::reload_every_call_limits;

namespace {

Value map(Value::Map m) { return Value(std::move(m)); }

// A schema as a plugin's table converts: argument name -> declaration, keys sorted.
Value modes_schema() {
    return map({{"mode", map({{"choices", Value(Value::Array{"fast", "safe"})}, {"required", true}, {"type", "string"}})},
                {"n", map({{"min", 1}, {"type", "integer"}})},
                {"share", map({{"doc", "a share"}, {"max", 1}, {"min", 0}, {"type", "number"}})},
                {"tags", map({{"type", "list"}})},
                {"weights", map({{"type", "map"}})}});
}

// The message check_arguments throws, with its kind.
std::pair<ErrorKind, std::string> refusal(const Value& schema, const Value& args) {
    try {
        check_arguments(schema, "modes.lua", "route", args);
    } catch (const Error& e) {
        return {e.kind(), e.what()};
    }
    return {ErrorKind::Internal, "accepted"};
}

} // namespace

TEST(PluginSchema, AcceptsWhatTheSchemaAllows) {
    const Value schema = modes_schema();
    check_arguments(schema, "modes.lua", "route", map({{"mode", "fast"}}));
    check_arguments(schema, "modes.lua", "route",
                    map({{"mode", "safe"}, {"n", 3.0}, {"share", int64_t(1)}, {"tags", Value(Value::Map{})},
                         {"weights", Value(Value::Array{})}}));  // 3.0 is whole; an empty table has no shape
    check_arguments(schema, "modes.lua", "route", map({{"mode", "fast"}, {"share", Value{}}}));  // nil is absent
    check_arguments(Value{}, "free.lua", "route", map({{"anything", 1}}));  // no schema: anything goes
}

TEST(PluginSchema, RefusesWithTheArgumentWhatWasExpectedAndWhatWasGiven) {
    const Value schema = modes_schema();
    const std::vector<std::pair<Value, std::string>> cases = {
        {map({{"mode", "fast"}, {"nn", 1}}), "modes.lua has no argument 'nn' (arguments: mode, n, share, tags, weights)"},
        {map({}), "modes.lua needs argument 'mode'"},
        {Value{}, "modes.lua needs argument 'mode'"},
        {map({{"mode", "quick"}}), "modes.lua argument 'mode' must be one of 'fast', 'safe', not 'quick'"},
        {map({{"mode", 1}}), "modes.lua argument 'mode' must be a string, not integer 1"},
        {map({{"mode", "fast"}, {"n", 2.5}}), "modes.lua argument 'n' must be an integer, not number 2.5"},
        {map({{"mode", "fast"}, {"n", 0}}), "modes.lua argument 'n' must be >= 1, not 0"},
        {map({{"mode", "fast"}, {"share", 1.5}}), "modes.lua argument 'share' must be between 0 and 1, not 1.5"},
        {map({{"mode", "fast"}, {"share", std::nan("")}}), "modes.lua argument 'share' must be between 0 and 1, not nan"},
        {map({{"mode", "fast"}, {"share", true}}), "modes.lua argument 'share' must be a number, not boolean true"},
        {map({{"mode", "fast"}, {"tags", "a,b"}}), "modes.lua argument 'tags' must be a list, not string 'a,b'"},
        {map({{"mode", "fast"}, {"weights", Value(Value::Array{1, 2})}}),
         "modes.lua argument 'weights' must be a map, not list [1, 2]"},
        {Value("mode=fast"), "modes.lua takes its arguments as a map of name -> value, not string 'mode=fast'"},
    };
    for (const auto& [args, message] : cases) {
        auto [kind, what] = refusal(schema, args);
        EXPECT_EQ(kind, ErrorKind::InvalidArgument) << message;
        EXPECT_EQ(what, message);
    }
    // A plugin declaring an empty schema takes no arguments, and says so.
    EXPECT_EQ(refusal(map({}), map({{"x", 1}})).second, "modes.lua has no argument 'x' (it takes none)");
    // Long values are cut in messages.
    std::string what = refusal(schema, map({{"mode", std::string(500, 'x')}})).second;
    EXPECT_LT(what.size(), 200u) << what;
    EXPECT_NE(what.find("..."), std::string::npos) << what;
}

TEST(PluginSchema, AMalformedSchemaIsThePluginsErrorNamingTheEntry) {
    const std::vector<std::pair<Value, std::string>> cases = {
        {map({{"n", map({{"type", "nubmer"}})}}),
         "modes.lua: the schema of route() declares argument 'n' with type string 'nubmer' (types: string, number, "
         "integer, boolean, list, map, any, column, columns, pattern): fix the plugin's schema table"},
        {map({{"n", map({{"requried", true}})}}),
         "modes.lua: the schema of route() declares argument 'n' with unknown field 'requried' (fields: type, required, "
         "doc, min, max, choices): fix the plugin's schema table"},
        {map({{"n", "number"}}), "declares argument 'n' as string 'number', not as a table"},
        {map({{"s", map({{"min", 1}, {"type", "string"}})}}), "of type string with min/max (only numbers have a range)"},
        {map({{"n", map({{"max", 0}, {"min", 1}, {"type", "number"}})}}), "with min 1 above max 0"},
        {map({{"n", map({{"choices", Value(Value::Array{1, "two"})}, {"type", "integer"}})}}),
         "of type integer with choice string 'two'"},
        {map({{"n", map({{"required", "yes"}})}}), "with required = 'yes' (true or false)"},
        {Value("column"), "modes.lua: schema must be a table of argument name -> {type = ..., doc = ...}"},
    };
    for (const auto& [schema, message] : cases) {
        auto [kind, what] = refusal(schema, map({}));
        EXPECT_EQ(kind, ErrorKind::PluginError) << message;
        EXPECT_NE(what.find(message), std::string::npos) << what;
    }
}

TEST(PluginSchema, EveryBuiltInDeclaresAWellFormedSchema) {
    Host host(reload_every_call_limits());
    int checked = 0;
    for (const auto& folder : {"routing", "quality"}) {
        for (const auto& file : fs::directory_iterator(fs::path(KEEL_SOURCE_DIR) / "plugins" / folder)) {
            const std::string entry = std::string(folder) == "routing" ? "route" : "check";
            Value schema = host.schema(file.path().string(), entry);
            ASSERT_TRUE(schema.is_map()) << file.path();
            for (const auto& [arg, decl] : schema.map()) EXPECT_NE(decl.find("doc"), nullptr) << file.path() << " " << arg;
            // Only required arguments may be refused when none are given; never the schema itself.
            try {
                check_arguments(host, file.path().string(), entry, map({}));
            } catch (const Error& e) {
                EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();
                EXPECT_NE(std::string(e.what()).find("needs argument"), std::string::npos) << e.what();
            }
            plugin_needs(host, file.path().string(), entry);  // known needs only
            ++checked;
        }
    }
    EXPECT_GE(checked, 12);
    auto drift = (fs::path(KEEL_SOURCE_DIR) / "plugins/quality/drift_psi.lua").string();
    EXPECT_EQ(plugin_needs(host, drift, "check"), std::vector<std::string>{"reference_profile"});
}

TEST(PluginSchema, NeedsAreReadAndUnknownOnesRefused) {
    PluginDir d;
    Host host(reload_every_call_limits());
    auto none = d.write("none.lua", "function check() return {status = 'pass'} end\n");
    auto wants = d.write("wants.lua", "needs = {'reference_profile'}\nfunction check() return {status = 'pass'} end\n");
    auto typo = d.write("typo.lua", "needs = {'reference_profiles'}\nfunction check() return {status = 'pass'} end\n");
    auto flat = d.write("flat.lua", "needs = 'reference_profile'\nfunction check() return {status = 'pass'} end\n");
    EXPECT_TRUE(plugin_needs(host, none, "check").empty());
    EXPECT_EQ(plugin_needs(host, wants, "check"), std::vector<std::string>{"reference_profile"});
    EXPECT_EQ(error_message(ErrorKind::PluginError, [&] { plugin_needs(host, typo, "check"); }),
              "typo.lua: needs lists string 'reference_profiles', which Keel does not provide (it provides: "
              "reference_profile)");
    EXPECT_THROW(plugin_needs(host, flat, "check"), Error);
}

TEST(PluginSchema, TheRouterChecksItsConfigWhenBuilt) {
    RouterConfig c;
    c.plugin = std::string(KEEL_SOURCE_DIR) + "/plugins/routing/sticky.lua";
    c.variants = {{"a", 1}, {"b", 1}};
    c.config = map({{"kee", "player_id"}});
    EXPECT_EQ(error_message(ErrorKind::InvalidArgument, [&] { Router r(c); }),
              "sticky.lua has no argument 'kee' (arguments: avoid_data_issues, key, salt)");
    c.config = map({{"avoid_data_issues", "yes"}});
    EXPECT_THROW(Router{c}, Error);
    c.config = map({{"key", "player_id"}, {"avoid_data_issues", true}});
    Router ok(c);
    Field f{"player_id", int64_t(7)};
    EXPECT_EQ(ok.route(std::span<const Field>(&f, 1)).fallback, Fallback::None);

    PluginDir d;
    c.plugin = d.write("broken.lua", "schema = {n = {type = 'nubmer'}}\nfunction route() return 'a' end\n");
    c.config = map({});
    auto msg = error_message(ErrorKind::PluginError, [&] { Router r(c); });
    EXPECT_NE(msg.find("broken.lua: the schema of route() declares argument 'n'"), std::string::npos) << msg;
}
