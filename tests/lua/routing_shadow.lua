-- Declarative cases for plugins/routing/shadow.lua: the champion answers, the rest are mirrored.
return {
  plugin = "plugins/routing/shadow.lua",
  variants = {{"champion", 1}, {"challenger", 0}, {"candidate", 0}},
  config = {},
  cases = {
    {req = {player_id = 7}, variant = "champion", shadows = {"challenger", "candidate"}},
  },
}
