-- Declarative cases for plugins/routing/weighted.lua: a per-request split by weight, and
-- avoid_data_issues routes away from a variant with an open data issue.
return {
  plugin = "plugins/routing/weighted.lua",
  variants = {{"a", 0.7}, {"b", 0.3}},
  config = {avoid_data_issues = true},
  splits = {
    {n = 20000, shares = {a = 0.7, b = 0.3}, tolerance = 0.02},
    -- the ~30% drawn onto b are moved to a, and say so (fallback "data_issue")
    {n = 20000, issues = {"b"}, shares = {a = 1.0, b = 0.0}, data_issue = 0.3, tolerance = 0.02},
  },
}
