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
                                 "  if stash.fn then return {status='pass', observed=stash.fn(stash.b, 'x'):mean()} end\n"
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
                      "  if keep then local ok, err = pcall(keep, batch, 'x'); return {status='fail', message=err} end\n"
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
