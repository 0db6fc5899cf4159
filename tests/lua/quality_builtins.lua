-- Declarative cases for the built-in quality rules (run by tests/python/test_plugin_tables.py).
-- data: columns as Lua arrays; nulls: 1-based rows to blank out per column; now: ctx.now.
return {
  data = {
    player_id = {1, 2, 3, 4, 5, 5},
    spend = {0.0, 10.5, 3.25, 7.0, 2.0, 99.0},
    country = {"DE", "FR", "DE", "US", "XX", "FR"},
    seen = {1700000000, 1700000100, 1700000200, 1700000300, 1700000400, 1700000500},
  },
  nulls = {spend = {2}},
  timestamps = {"seen"},
  now = 1700000600,
  cases = {
    {rule = "plugins/quality/not_null.lua", args = {column = "player_id"}, status = "pass", observed = 0},
    {rule = "plugins/quality/not_null.lua", args = {column = "spend"}, status = "fail"},
    {rule = "plugins/quality/not_null.lua", args = {column = "spend", max_null_rate = 0.2}, status = "pass"},
    {rule = "plugins/quality/range.lua", args = {column = "spend", min = 0, max = 100}, status = "pass", observed = 0},
    {rule = "plugins/quality/range.lua", args = {column = "spend", max = 50}, status = "fail", observed = 1},
    {rule = "plugins/quality/unique.lua", args = {column = "player_id"}, status = "fail", observed = 1},
    {rule = "plugins/quality/unique.lua", args = {column = "seen"}, status = "pass"},
    {rule = "plugins/quality/allowed_values.lua", args = {column = "country", values = {"DE", "FR", "US"}}, status = "fail"},
    {rule = "plugins/quality/allowed_values.lua", args = {column = "country", values = {"DE", "FR", "US"}, min_share = 0.8},
     status = "pass"},
    {rule = "plugins/quality/allowed_values.lua", args = {column = "country", values = {"DE"}}, status = "fail",
     message = 'most frequent not allowed: "FR" (2), "US" (1), "XX" (1)'},
    {rule = "plugins/quality/pattern.lua", args = {column = "country", pattern = "^[A-Z]{2}$"}, status = "pass", observed = 1},
    {rule = "plugins/quality/pattern.lua", args = {column = "country", pattern = "^(DE|FR)$"}, status = "fail",
     observed = 4 / 6},
    {rule = "plugins/quality/pattern.lua", args = {column = "country", pattern = "X", min_share = 0.1}, status = "pass"},
    {rule = "plugins/quality/row_count.lua", args = {min = 5}, status = "pass", observed = 6},
    {rule = "plugins/quality/row_count.lua", args = {min = 10}, status = "fail"},
    {rule = "plugins/quality/freshness.lua", args = {column = "seen", max_age = "10m"}, status = "pass", observed = 100},
    {rule = "plugins/quality/freshness.lua", args = {column = "seen", max_age = 60}, status = "fail"},
    {rule = "plugins/quality/drift_psi.lua", args = {column = "spend"}, status = "pass"},
    -- a rule that names a missing column errors, naming the column (it never passes silently)
    {rule = "plugins/quality/range.lua", args = {column = "nope", min = 0}, status = "error", message = "no column 'nope'"},
  },
}
