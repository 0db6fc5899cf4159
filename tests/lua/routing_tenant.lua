-- Declarative routing cases for plugins/routing/tenant.lua (run by tests/python/test_plugin_tables.py).
return {
  plugin = "plugins/routing/tenant.lua",
  variants = {{"champion", 0.5}, {"studio_b_model", 0.5}, {"canary", 0}},
  config = {tenants = {["studio-a"] = "champion", ["studio-b"] = "studio_b_model", ["studio-z"] = "nope"}},
  cases = {
    {req = {tenant = "studio-a", player_id = 1}, variant = "champion"},
    {req = {tenant = "studio-b", player_id = 1}, variant = "studio_b_model"},
    {req = {tenant = "studio-c", player_id = 1}, variant = "champion"},
    {req = {player_id = 1}, variant = "champion"},
    -- a mapping to a variant that does not exist falls back to the default and is counted
    {req = {tenant = "studio-z"}, variant = "champion", fallback = "unknown_variant"},
  },
}
