"""Hostile quality rules: nothing a check() plugin keeps or passes may crash or hang the host."""

import gc

import numpy as np
import pandas as pd
import pytest

import keel
from keel import quality


def frame(n=50):
    return pd.DataFrame({"x": np.arange(n, dtype=float), "s": [f"v{i}" for i in range(n)]})


@pytest.fixture
def plugins(tmp_path):
    d = tmp_path / "plugins"
    d.mkdir()
    # A module shared by every plugin of the state: what one check() stores there outlives it.
    (d / "stash.lua").write_text("return {}\n")
    return d


def write(d, name, body):
    path = d / name
    path.write_text(body)
    return path


# Each kind of object a check() can keep, stored during the first call and used in the second.
KEEPERS = {
    "column_closure_in_module": ("local stash = require('stash')\n"
                                 "function check(batch, ctx)\n"
                                 "  if stash.fn then "
                                 "return {status='pass', observed=stash.fn(stash.b, 'x'):mean()} end\n"
                                 "  stash.fn, stash.b = batch.column, batch\n"
                                 "  return {status='pass'}\nend\n"),
    "has_closure_in_global": ("kept = false\nfunction check(batch, ctx)\n"
                              "  if kept then return {status='pass', observed=kept(nil, 'x')} end\n"
                              "  kept = batch.has\n  return {status='pass'}\nend\n"),
    "column_closure_in_upvalue": ("local keep\n"
                                  "function check(batch, ctx)\n"
                                  "  if keep then return {status='pass', observed=keep(batch, 'x'):count()} end\n"
                                  "  keep = batch.column\n  return {status='pass'}\nend\n"),
    "column_handle": ("local keep\n"
                      "function check(batch, ctx)\n"
                      "  if keep then return {status='pass', observed=keep:max()} end\n"
                      "  keep = batch:column('s')\n  return {status='pass'}\nend\n"),
    "whole_batch": ("local keep\n"
                    "function check(batch, ctx)\n"
                    "  if keep then return {status='pass', observed=keep:column('x'):mean()} end\n"
                    "  keep = batch\n  return {status='pass'}\nend\n"),
    "has_via_pcall": ("local keep\n"
                      "function check(batch, ctx)\n"
                      "  if keep then "
                      "local ok, err = pcall(keep, batch, 'x'); return {status='fail', message=err} end\n"
                      "  keep = batch.has\n  return {status='pass'}\nend\n"),
}


@pytest.mark.parametrize("kind", sorted(KEEPERS))
def test_objects_kept_from_an_earlier_check_raise_instead_of_crashing(plugins, kind):
    rule = quality.rule(write(plugins, f"{kind}.lua", KEEPERS[kind]))
    first = frame()
    assert quality.check(first, [rule]).results[0]["status"] == "pass"
    del first
    gc.collect()  # the first batch's memory is gone
    (res,) = quality.check(frame(7), [rule]).results
    assert res["status"] in ("error", "fail")
    assert "used after check() returned" in res["message"]


def test_kept_closures_raise_outside_any_check(plugins):
    write(plugins, "keeper.lua", "local stash = require('stash')\n"
          "function check(batch, ctx)\n  stash.col, stash.has, stash.h = batch.column, batch.has, batch:column('x')\n"
          "  return {status='pass'}\nend\n")
    write(plugins, "poke.lua", "local stash = require('stash')\n"
          "function poke(what)\n  if what == 'col' then return stash.col(nil, 'x') end\n"
          "  if what == 'has' then return stash.has(nil, 'x') end\n  return stash.h:mean()\nend\n")
    df = frame()
    assert quality.check(df, [quality.rule(plugins / "keeper.lua")]).passed
    del df
    gc.collect()
    for what, name in (("col", "batch.column"), ("has", "batch.has"), ("h", "column")):
        with pytest.raises(keel.PluginError, match=f"{name} used after check\\(\\) returned"):
            keel.plugins.call(plugins / "poke.lua", "poke", what)


def test_kept_objects_still_work_within_their_own_run(plugins):
    # A later rule of the same batch may use what an earlier one kept: the batch is still alive.
    write(plugins, "first.lua", "local stash = require('stash')\n"
          "function check(batch, ctx) stash.now = batch.column; return {status='pass'} end\n")
    write(plugins, "second.lua", "local stash = require('stash')\n"
          "function check(batch, ctx) return {status='pass', observed=stash.now(batch, 'x'):max()} end\n")
    report = quality.check(frame(10), [quality.rule(plugins / "first.lua"), quality.rule(plugins / "second.lua")])
    assert [r["status"] for r in report.results] == ["pass", "pass"]
    assert report.results[1]["observed"] == 9


def test_the_batch_handle_is_opaque(plugins):
    write(plugins, "peek.lua", "function check(batch, ctx)\n"
          "  return {status='pass', observed={mt=tostring(getmetatable(batch.column)), t=type(batch.column)}}\nend\n")
    (res,) = quality.check(frame(), [quality.rule(plugins / "peek.lua")]).results
    assert res["observed"] == {"mt": "nil", "t": "function"}


# --- pattern_share: RE2, safe on hostile patterns -----------------------------------------------

def test_a_backreference_pattern_is_a_rule_error_not_a_crash(plugins):
    rule = quality.rule(write(plugins, "bad.lua", "function check(batch, ctx)\n"
                              "  return {status='pass', "
                              "observed=batch:column('s'):pattern_share('(|)(\\\\1\\\\1)*')}\nend\n"))
    for _ in range(2):
        (res,) = quality.check(frame(), [rule]).results
        assert res["status"] == "error"
        assert "bad.lua:2" in res["message"] and "pattern '(|)(\\1\\1)*' cannot be used" in res["message"]
        assert "invalid escape sequence: \\1" in res["message"]


def test_add_rule_refuses_patterns_re2_cannot_take_and_saves_nothing(ws):
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("people", entities=["player"], schema={"email": "string"})
    with pytest.raises(keel.InvalidArgument) as err:
        fv.add_rule("plugins/quality/pattern.lua", column="email", pattern="(|)(\\1\\1)*")
    assert str(err.value) == ("pattern.lua argument 'pattern': pattern '(|)(\\1\\1)*' cannot be used: invalid escape "
                              "sequence: \\1 (patterns are RE2 syntax: no backreferences or lookaround)")
    with pytest.raises(keel.InvalidArgument, match="pattern too large - compile failed \\(its compiled form may take"):
        fv.add_rule("plugins/quality/pattern.lua", column="email", pattern="\\pL{1000}")
    with pytest.raises(keel.InvalidArgument, match="invalid repetition size: \\{5000\\}"):
        fv.add_rule("plugins/quality/pattern.lua", column="email", pattern="a{5000}")
    with pytest.raises(keel.InvalidArgument, match="longer than 4096 characters"):
        fv.add_rule("plugins/quality/pattern.lua", column="email", pattern="a" * 5000)
    with pytest.raises(keel.InvalidArgument, match="invalid perl operator: \\(\\?="):
        quality.check(pd.DataFrame({"email": ["x"]}),
                      [quality.rule("plugins/quality/pattern.lua", column="email", pattern="^(?=a)")])
    assert fv.quality.rule_ids() == []
    T0 = pd.Timestamp("2026-01-01", tz="UTC")
    df = pd.DataFrame({"player_id": [1, 2, 3], "event_timestamp": [T0] * 3,
                       "email": ["a@example.com", "b@example.com", "not-an-email"]})
    fv.add_rule("plugins/quality/pattern.lua", column="email", pattern="^[^@]+@[^@]+$", min_share=0.5)
    assert fv.ingest(df)["rows"] == 3
    (res,) = fv.quality_history().to_dict("records")
    assert res["status"] == "pass" and res["observed"] == pytest.approx(2 / 3)


def test_re2_syntax_users_see():
    s = pd.DataFrame({"s": ["abc123", "ABC", "a1", "", "ütf-8"], "n": [1.5, 2.0, -3.0, 10.0, 0.25]})

    def share(column, pattern):
        r = quality.check(s, [quality.rule("plugins/quality/pattern.lua", column=column, pattern=pattern, min_share=0)])
        return r.results[0]["observed"]
    assert share("s", "^[[:alpha:]]+[[:digit:]]+$") == pytest.approx(2 / 5)  # POSIX classes, as before
    assert share("s", "^\\w+\\d$") == pytest.approx(2 / 5)                   # Perl classes, new
    assert share("s", "(?i)^abc") == pytest.approx(2 / 5)                    # flags
    assert share("s", "^.tf") == pytest.approx(1 / 5)                        # . is one UTF-8 character
    assert share("s", "") == 1.0                                             # matches anywhere, empty too
    assert share("n", "^-?\\d+$") == pytest.approx(3 / 5)                    # numbers match their %.17g text


def test_hostile_patterns_run_in_linear_time():
    import time
    df = pd.DataFrame({"s": ["a" * 2000 + "!"] * 500})
    start = time.process_time()
    for pattern in ("^(a+)+$", "(a|aa)*b", "(.*a){20}$", "^(a|a?)+$"):
        r = quality.check(df, [quality.rule("plugins/quality/pattern.lua", column="s", pattern=pattern, min_share=0)])
        assert r.results[0]["status"] == "pass" and r.results[0]["observed"] == 0.0
    assert time.process_time() - start < 10


def test_a_lying_len_cannot_stretch_helper_loops(plugins):
    rule = quality.rule(write(plugins, "len.lua", "function check(batch, ctx)\n"
                              "  local t = setmetatable({'v1', 0.5}, {__len = function() return 1e9 end})\n"
                              "  local q = setmetatable({0, 0.5}, getmetatable(t))\n"
                              "  local s, x = batch:column('s'), batch:column('x')\n"
                              "  return {status='pass', "
                              "observed={s:allowed_share(t), #s:not_allowed(t), x:quantile(q)}}\n"
                              "end\n"))
    import time
    start = time.process_time()
    (res,) = quality.check(frame(4), [rule]).results
    assert time.process_time() - start < 2
    assert res["status"] == "pass", res["message"]
    assert res["observed"] == [0.25, 3, [0.0, 1.5]]
