"""Importing keel changes nothing process-wide: no warnings filter, no plugin search path, no exit
or fork hooks. What Keel needs is set up on first use."""

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(code: str, cwd: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "KEEL_PLUGIN_PATH"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd,
                         env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_leaves_warnings_filters_alone(tmp_path):
    out = run("""
        import warnings
        import numpy, pandas, pyarrow  # their own filters come first
        before = list(warnings.filters)
        import keel, keel.serving, keel.plugins, keel.quality, keel.features, keel.inference, keel.autolog
        print(warnings.filters == before)
    """, str(tmp_path))
    assert out == "True"


def test_plugin_search_path_is_set_on_first_use_not_on_import(tmp_path):
    out = run("""
        import keel, keel.plugins, keel.quality, keel.serving
        from keel import _core
        print(list(_core.plugins_search_path()))
        print(keel.plugins.resolve("plugins/routing/sticky.lua").endswith("plugins/routing/sticky.lua"))
        print(len(keel.plugins.search_path()))
    """, str(tmp_path))  # a cwd without plugins/: only the search path finds the built-ins
    assert out.splitlines() == ["[]", "True", "1"]


def test_a_search_path_set_before_first_use_is_kept(tmp_path):
    (tmp_path / "mine" / "plugins" / "routing").mkdir(parents=True)
    (tmp_path / "mine" / "plugins" / "routing" / "all_a.lua").write_text('function route(req, ctx) return "a" end\n')
    out = run(f"""
        import keel.plugins as p
        p.set_search_path([{str(tmp_path / "mine")!r}])
        r = p.Router("plugins/routing/all_a.lua", {{"a": 1, "b": 1}})
        print(r.route({{}}).variant, p.resolve("plugins/routing/sticky.lua").endswith("sticky.lua"))
        print(len(p.search_path()))
    """, str(tmp_path))
    assert out.splitlines() == ["a True", "2"]


def test_exit_and_fork_hooks_wait_for_first_use(tmp_path):
    out = run("""
        import atexit, os
        calls = []
        real_atexit, real_fork = atexit.register, os.register_at_fork

        def keel_call(kind, fn):  # only Keel's own hooks count, not those of the libraries it imports
            if getattr(fn, "__module__", "").startswith("keel"):
                calls.append(kind)

        atexit.register = lambda fn, *a, **k: keel_call("atexit", fn) or real_atexit(fn, *a, **k)
        os.register_at_fork = lambda **k: keel_call("fork", k.get("after_in_child")) or real_fork(**k)
        import keel, keel.autolog, keel.run_guard, keel.tracking
        print(calls)
        ws = keel.open("ws.keel")
        with ws.start_run(experiment="e"):
            pass
        print(calls)
    """, str(tmp_path))
    assert out.splitlines() == ["[]", "['fork']"]


def test_import_keel_imports_neither_spark_nor_dask(tmp_path):
    out = run("""
        import sys
        import keel, keel.features, keel.inference, keel.engines
        ws = keel.open("ws.keel")
        ws.features.entity("player", join_keys=["player_id"])
        print(sorted(m for m in ("pyspark", "dask", "py4j") if m in sys.modules))
    """, str(tmp_path))
    assert out == "[]"
