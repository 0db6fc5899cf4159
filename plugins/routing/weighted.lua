-- plugins/routing/weighted.lua: split requests by weight, independently per request (not sticky;
-- use sticky.lua when a user must keep their variant).
--
-- config: avoid_data_issues  true: skip variants fed by a feature view with an open issue
schema = {
  key = {type = "string", doc = "ignored (weighted.lua is not sticky); accepted so endpoints can pass it"},
  avoid_data_issues = {type = "boolean", doc = "skip variants fed by a feature view with an open issue"},
}

local random = math.random

function route(req, ctx)
  local variants, weights, issues = ctx.variants, ctx.weights, ctx.issues
  local avoid = ctx.config.avoid_data_issues
  local total = 0
  for i = 1, #variants do
    if not (avoid and issues[variants[i]]) then total = total + weights[i] end
  end
  if total <= 0 then return ctx.default end
  local r = random() * total
  local acc = 0
  for i = 1, #variants do
    if not (avoid and issues[variants[i]]) then
      acc = acc + weights[i]
      if r < acc then return variants[i] end
    end
  end
  return ctx.default
end
