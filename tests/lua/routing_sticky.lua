-- Declarative cases for plugins/routing/sticky.lua: the split follows the weights, and requests
-- without the sticky key fall back to the default (counted).
return {
  plugin = "plugins/routing/sticky.lua",
  variants = {{"champion", 0.9}, {"challenger", 0.1}},
  config = {key = "player_id", salt = "churn-test", avoid_data_issues = true},
  cases = {
    {req = {tenant = "studio-a"}, variant = "champion", fallback = "error"},
  },
  splits = {
    {key = "player_id", n = 20000, shares = {champion = 0.9, challenger = 0.1}, tolerance = 0.01},
    -- a challenger with a data issue: its 10% move to the champion, each one reported
    {key = "player_id", n = 20000, issues = {"challenger"}, shares = {champion = 1.0, challenger = 0.0},
     data_issue = 0.1, tolerance = 0.01},
  },
}
