import os
import subprocess
import sys
import re
import textwrap
import time

import pytest

import keel
from keel import plugins

STICKY = "plugins/routing/sticky.lua"


def test_bucket_is_stable_and_pinned():
    # Pinned: changing the hash would move every sticky user in the field.
    assert plugins.bucket(42, "exp") == plugins.bucket("42", "exp")
    assert plugins.bucket(42.0, "exp") == plugins.bucket(42, "exp")
    assert plugins.bucket("42", "exp") != plugins.bucket("42", "other")
    assert 0 <= plugins.bucket("anything") < 1
    code = "from keel import plugins; print(repr(plugins.bucket('player-7', 'churn')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ})
    assert float(out.stdout) == plugins.bucket("player-7", "churn")


def test_sticky_keeps_users_and_moves_only_into_growing_variant():
    variants = {"a": 0.5, "b": 0.2, "c": 0.3}
    r = plugins.Router(STICKY, variants, config={"key": "player_id"}, name="exp")
    keys = [{"player_id": i} for i in range(20000)]
    before = [d.variant for d in r.route_many(keys)]
    assert before == [d.variant for d in r.route_many(keys)]  # sticky
    r.set_weights({"b": 0.4})  # b grows; a and c keep their weights
    after = [d.variant for d in r.route_many(keys)]
    moved = [(x, y) for x, y in zip(before, after) if x != y]
    assert moved, "raising a weight must move some users"
    assert all(y == "b" for _, y in moved), "users may only move into the growing variant"
    share_b = after.count("b") / len(after)
    assert abs(share_b - 0.4 / 1.2) < 0.015


def test_sticky_is_the_same_in_another_process():
    r = plugins.Router(STICKY, {"champion": 0.9, "challenger": 0.1}, config={"key": "player_id"}, name="churn")
    mine = [r.route({"player_id": i}).variant for i in range(200)]
    code = textwrap.dedent("""
        from keel import plugins
        r = plugins.Router("plugins/routing/sticky.lua", {"champion": 0.9, "challenger": 0.1},
                           config={"key": "player_id"}, name="churn")
        print(",".join(r.route({"player_id": i}).variant for i in range(200)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().split(",") == mine


def test_failures_fall_back_to_default_and_are_counted(tmp_path):
    bad = tmp_path / "plugins" / "bad.lua"
    bad.parent.mkdir()
    bad.write_text("function route(req, ctx)\n  if req.mode == 'loop' then while true do end end\n"
                   "  if req.mode == 'error' then error('boom') end\n"
                   "  if req.mode == 'unknown' then return 'nope' end\n"
                   "  if req.mode == 'number' then return 7 end\n"
                   "  return 'b'\nend\n")
    r = plugins.Router(bad, {"a": 1, "b": 1, "c": 1}, default="c")
    assert r.route({"mode": "ok"}) == ("b", [], "")
    assert r.route({"mode": "error"}) == ("c", [], "error")
    assert "bad.lua:3: boom" in r.stats()["last_error"]
    assert r.route({"mode": "loop"}) == ("c", [], "budget")
    assert "bad.lua:2" in r.stats()["last_error"]
    assert r.route({"mode": "unknown"}).fallback == "unknown_variant"
    assert r.route({"mode": "number"}).fallback == "unknown_variant"
    s = r.stats()
    assert (s["decisions"], s["fallbacks"], s["errors"], s["budget"], s["unknown_variant"]) == (5, 4, 1, 1, 2)
    assert s["served"] == {"a": 0, "b": 1, "c": 4}


def test_router_definition_errors(tmp_path):
    with pytest.raises(keel.NotFound, match=r"missing\.lua"):
        plugins.Router("plugins/routing/missing.lua", {"a": 1})
    with pytest.raises(keel.InvalidArgument, match="default variant 'x'"):
        plugins.Router(STICKY, {"a": 1}, default="x")
    with pytest.raises(keel.InvalidArgument, match="weight -1"):
        plugins.Router(STICKY, {"a": -1})
    r = plugins.Router(STICKY, {"a": 1})
    with pytest.raises(keel.InvalidArgument, match="unknown variant 'zz'"):
        r.set_weights({"zz": 1})
    broken = tmp_path / "broken.lua"
    broken.write_text("function route(req, ctx) return 'a' \n")
    with pytest.raises(keel.PluginError, match=r"broken\.lua"):
        plugins.Router(broken, {"a": 1})


def test_shadow_and_tenant_builtins():
    r = plugins.Router("plugins/routing/shadow.lua", {"champion": 1, "challenger": 0})
    assert r.route({"player_id": 1}) == ("champion", ["challenger"], "")
    t = plugins.Router("plugins/routing/tenant.lua", {"base": 1, "studio_b": 1},
                       config={"tenants": {"studio-b": "studio_b"}, "avoid_data_issues": True})
    assert t.route({"tenant": "studio-b"}).variant == "studio_b"
    t.set_issues(["studio_b"])
    assert t.route({"tenant": "studio-b"}).variant == "base"


def test_reload_is_atomic(tmp_path):
    plugins.set_limits(reload_check_ms=0)
    try:
        p = tmp_path / "plugins" / "flip.lua"
        p.parent.mkdir()
        p.write_text("function route(req, ctx) return 'a' end\n")
        r = plugins.Router(p, {"a": 1, "b": 1})
        assert r.route({}).variant == "a"
        time.sleep(0.01)
        p.write_text("function route(req, ctx) return 'b' end\n")
        assert r.route({}).variant == "b"
        p.write_text("function route(req, ctx) return 'a' end end end\n")  # broken edit
        d = r.route({})
        assert d == ("b", [], "")
        st = plugins.status(p)
        assert st["reloads_refused"] == 1 and "flip.lua" in st["last_error"]
        s = r.stats()
        assert s["plugin_version"] == 2 and s["reloads_refused"] == 1 and "flip.lua" in s["reload_error"]
    finally:
        plugins.set_limits(reload_check_ms=200)


def test_sandbox_from_python(tmp_path):
    p = tmp_path / "plugins" / "evil.lua"
    p.parent.mkdir()
    p.write_text("function route() return io.open('/etc/passwd'):read('a') end\n")
    with pytest.raises(keel.PluginError, match="unknown global 'io'"):
        plugins.call(p, "route")


def test_routing_config_is_checked_against_the_plugin_schema():
    with pytest.raises(keel.InvalidArgument, match=re.escape("sticky.lua has no argument 'kee' (arguments: "
                                                             "avoid_data_issues, key, salt)")):
        plugins.Router(STICKY, {"a": 1}, config={"kee": "player_id"})
    with pytest.raises(keel.InvalidArgument,
                       match=re.escape("tenant.lua argument 'tenants' must be a map, not list ['studio-a']")):
        plugins.Router("plugins/routing/tenant.lua", {"a": 1}, config={"tenants": ["studio-a"]})
    with pytest.raises(keel.InvalidArgument, match="argument 'avoid_data_issues' must be a boolean, not integer 1"):
        plugins.Router(STICKY, {"a": 1}, config={"avoid_data_issues": 1})


def test_the_schema_check_is_the_cpp_hosts_and_covers_ranges_and_choices(tmp_path):
    plugin = tmp_path / "plugins" / "modes.lua"
    plugin.parent.mkdir()
    plugin.write_text("schema = {mode = {type = 'string', required = true, choices = {'fast', 'safe'}},\n"
                      "          share = {type = 'number', min = 0, max = 1}, n = {type = 'integer', min = 1}}\n"
                      "function route(req, ctx) return ctx.variants[1] end\n")
    plugins.validate(plugin, "route", {"mode": "fast", "share": 0.5, "n": 3.0})  # a whole float is an integer
    refusals = [({}, "modes.lua needs argument 'mode'"),
                ({"mode": "quick"}, "modes.lua argument 'mode' must be one of 'fast', 'safe', not 'quick'"),
                ({"mode": "fast", "share": 1.5}, "argument 'share' must be between 0 and 1, not 1.5"),
                ({"mode": "fast", "share": float("nan")}, "argument 'share' must be between 0 and 1, not nan"),
                ({"mode": "fast", "share": True}, "argument 'share' must be a number, not boolean true"),
                ({"mode": "fast", "n": 0}, "argument 'n' must be >= 1, not 0"),
                ({"mode": "fast", "n": 2.5}, "argument 'n' must be an integer, not number 2.5")]
    for config, message in refusals:
        with pytest.raises(keel.InvalidArgument) as err:
            plugins.validate(plugin, "route", config)
        assert message in str(err.value), config
        with pytest.raises(keel.InvalidArgument) as err:  # the router refuses the same, in C++
            plugins.Router(plugin, {"a": 1}, config=config)
        assert message in str(err.value), config
    assert plugins.Router(plugin, {"a": 1}, config={"mode": "safe"}).route({}).variant == "a"


def test_a_malformed_schema_is_the_plugins_error(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    cases = {"typo.lua": ("{n = {type = 'nubmer'}}", "declares argument 'n' with type string 'nubmer' (types: string"),
             "field.lua": ("{n = {type = 'number', requried = true}}",
                           "with unknown field 'requried' (fields: type, "),
             "range.lua": ("{s = {type = 'string', min = 1}}",
                           "of type string with min/max (only numbers have a range)"),
             "flat.lua": ("{n = 'number'}", "declares argument 'n' as string 'number', not as a table")}
    for name, (schema, message) in cases.items():
        (folder / name).write_text(f"schema = {schema}\nfunction route(req, ctx) return 'a' end\n")
        with pytest.raises(keel.PluginError) as err:
            plugins.Router(folder / name, {"a": 1})
        assert f"{name}: the schema of route()" in str(err.value) and message in str(err.value), str(err.value)
