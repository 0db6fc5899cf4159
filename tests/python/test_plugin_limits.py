"""Hostile plugins from Python: every call comes back within a bound (PluginError naming the file,
line and limit for plugins.call and quality; the default variant for routing), the host stays
usable, and no plugin call holds the GIL while it runs."""

import threading
import time

import pandas as pd
import pytest

import keel
from keel import _core, plugins, quality

BOUND = 2.0  # seconds any hostile call may take with the default limits

LOOP = "function() while true do end end"
HOSTILE = {
    "xpcall_loop": f"return xpcall({LOOP}, {LOOP})",
    "xpcall_error": f"return xpcall(function() error('x') end, {LOOP})",
    "pcall_nested": f"return pcall(pcall, xpcall, {LOOP}, {LOOP})",
    "tostring_handler": f"return xpcall(function() error(setmetatable({{}}, {{__tostring = {LOOP}}})) end, tostring)",
    "find_n5": "return string.find(string.rep('a', 200), '.-.-.-.-b')",
    "gsub_n5": "return string.gsub(string.rep('a', 300), '.-.-.-.-b', '')",
    "rep_huge": "return #string.rep('x', 2^40)",
    "move_huge": "return table.move({}, 1, 2^40, 2)",
    "concat_fake_len": "return table.concat(setmetatable({}, {__index = type, __len = function() return 2^40 end}))",
    "concat_loop": "local s = string.rep('x', 1000000)\nwhile true do local t = s .. '!' end",
}
LIMIT = r"(instruction budget|time limit|per-string limit|memory cap)"


def _write(tmp_path, name, source):
    path = tmp_path / "plugins" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


@pytest.fixture
def fine(tmp_path):
    return _write(tmp_path, "fine.lua", "function route() return 'b' end\n")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_call_raises_plugin_error_within_the_bound(tmp_path, fine, name):
    path = _write(tmp_path, f"{name}.lua", f"function route(req, ctx)\n{HOSTILE[name]}\nend\n")
    t0 = time.monotonic()
    with pytest.raises(keel.PluginError, match=rf"{name}\.lua:\d+: .*{LIMIT}"):
        plugins.call(path, "route")
    assert time.monotonic() - t0 < BOUND
    assert plugins.call(fine, "route") == "b"  # the host stays usable...
    assert _core.plugins_memory_used() < 8 << 20  # ...and its memory is back


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_router_falls_back_within_the_bound(tmp_path, name):
    path = _write(tmp_path, f"r_{name}.lua",
                  f"function route(req, ctx)\n  if req.go then\n{HOSTILE[name]}\n  end\n  return 'b'\nend\n")
    r = plugins.Router(path, {"a": 1, "b": 1})
    t0 = time.monotonic()
    d = r.route({"go": True})
    assert time.monotonic() - t0 < BOUND
    assert d.variant == "a" and d.fallback in ("budget", "memory"), r.stats()["last_error"]
    assert r.route({"go": False}) == ("b", [], "")


def test_rep_of_nothing_is_nothing_at_once(tmp_path):
    path = _write(tmp_path, "rep_empty.lua", "function route() return string.rep('', 2^40) end\n")
    t0 = time.monotonic()
    assert plugins.call(path, "route") == ""
    assert time.monotonic() - t0 < 0.5


def _burn_while_counting(run):
    """Runs `run` (which burns a plugin's time limit) while another Python thread counts."""
    counter = 0
    stop = threading.Event()

    def spin():
        nonlocal counter
        while not stop.is_set():
            counter += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        before = counter
        t0 = time.monotonic()
        result = run()
        elapsed = time.monotonic() - t0
        return result, elapsed, counter - before
    finally:
        stop.set()
        t.join()


def test_router_does_not_hold_the_gil_while_a_plugin_burns(tmp_path):
    path = _write(tmp_path, "burn.lua", "function route(req, ctx) while true do end end\n")
    r = plugins.Router(path, {"a": 1, "b": 1})
    plugins.set_limits(call_instructions=10**12, call_ms=800)
    try:
        d, elapsed, progress = _burn_while_counting(lambda: r.route({"user_id": 1, "tenant": "x"}))
    finally:
        plugins.set_limits(call_instructions=1_000_000, call_ms=2000)
    assert d.fallback == "budget" and "time limit of 800 ms" in r.stats()["last_error"]
    assert 0.5 < elapsed < BOUND + 1
    assert progress > 10_000, "another Python thread must run while route() burns its time"


def test_plugins_call_does_not_hold_the_gil(tmp_path):
    path = _write(tmp_path, "burn2.lua", "function route() while true do end end\n")
    plugins.set_limits(call_instructions=10**12, call_ms=800)
    try:
        def run():
            with pytest.raises(keel.PluginError, match="time limit of 800 ms"):
                plugins.call(path, "route")
        _, elapsed, progress = _burn_while_counting(run)
    finally:
        plugins.set_limits(call_instructions=1_000_000, call_ms=2000)
    assert elapsed < BOUND + 1 and progress > 10_000


def test_quality_helper_ignores_a_lying_len(tmp_path):
    # allowed_share walked 1..#t through __len: a table claiming 1e9 entries took 10 s.
    rule = _write(tmp_path, "lying.lua",
                  "function check(batch, ctx)\n"
                  "  local fake = setmetatable({'DE'}, {__len = function() return 1e9 end})\n"
                  "  local col = batch:column('country')\n"
                  "  return {status = 'pass', observed = {share = col:allowed_share(fake),\n"
                  "          q = col and batch:column('n'):quantile("
                  "setmetatable({0.5}, {__len = function() return 1e9 end}))}}\n"
                  "end\n")
    df = pd.DataFrame({"country": ["DE", "FR"] * 500, "n": range(1000)})
    t0 = time.monotonic()
    (res,) = quality.check(df, [quality.rule(rule)]).results
    assert time.monotonic() - t0 < BOUND
    assert res["status"] == "pass", res
    assert res["observed"]["share"] == 0.5 and res["observed"]["q"] == [499.5]


def test_hostile_quality_rule_reports_an_error_within_the_bound(tmp_path):
    rule = _write(tmp_path, "hostile_rule.lua", f"function check(batch, ctx)\n{HOSTILE['xpcall_loop']}\nend\n")
    df = pd.DataFrame({"x": [1, 2, 3]})
    t0 = time.monotonic()
    (res,) = quality.check(df, [quality.rule(rule)]).results
    assert time.monotonic() - t0 < BOUND
    assert res["status"] == "error"
    assert "hostile_rule.lua:2" in res["message"] and "instruction budget" in res["message"]


def test_require_cannot_follow_a_link_to_a_sibling_folder(tmp_path):
    # plugins_evil/ starts with "plugins": the old string-prefix check let this through.
    evil = tmp_path / "plugins_evil"
    evil.mkdir()
    (evil / "payload.lua").write_text("return 'escaped'\n")
    (tmp_path / "plugins" / "lib").mkdir(parents=True)
    (tmp_path / "plugins" / "lib" / "evil").symlink_to(evil, target_is_directory=True)
    path = _write(tmp_path, "req.lua", "function route() return require('lib.evil.payload') end\n")
    with pytest.raises(keel.PluginError, match=r"req\.lua:1: require\('lib\.evil\.payload'\) refused: .*outside"):
        plugins.call(path, "route")


def test_limits_are_listed_and_checked():
    lim = plugins.limits()
    assert lim["call_ms"] == 2000 and lim["string_bytes"] == 1 << 20
    with pytest.raises(keel.InvalidArgument, match="call_ms=0"):
        plugins.set_limits(call_ms=0)
    with pytest.raises(keel.InvalidArgument, match=r"unknown plugin limit\(s\) deadline \(known: call_instructions, "
                                                   "load_instructions, memory_bytes, string_bytes, call_ms, "
                                                   r"reload_check_ms\)"):
        plugins.set_limits(deadline=5, call_ms=100)
    assert plugins.limits() == lim


@pytest.mark.parametrize("call, limit", [("col:allowed_share(big)", "allowed_share"),
                                         ("col:psi({kind = 'categorical', shares = shares})", "converting a table")])
def test_quality_helpers_charge_the_tables_they_walk(tmp_path, call, limit):
    # One helper call over a plugin's big table is fine; calling it in a loop ran for minutes.
    rule = _write(tmp_path, "walk.lua",
                  "function check(batch, ctx)\n"
                  "  local big, shares = {}, {}\n"
                  "  for i = 1, 50000 do big[i] = 'v' .. i; shares[big[i]] = 0.00002 end\n"
                  "  local col = batch:column('country')\n"
                  f"  while true do local _ = {call} end\n"
                  "end\n")
    df = pd.DataFrame({"country": ["DE", "FR"] * 50})
    t0 = time.monotonic()
    (res,) = quality.check(df, [quality.rule(rule)]).results
    assert time.monotonic() - t0 < BOUND
    assert res["status"] == "error" and "walk.lua:5" in res["message"] and limit in res["message"], res
