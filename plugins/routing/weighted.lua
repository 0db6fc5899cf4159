-- plugins/routing/weighted.lua: split requests by weight, independently per request (not sticky;
-- use sticky.lua when a user must keep their variant).
--
-- config: avoid_data_issues  true: skip variants fed by a feature view with an open issue (a request
--         drawn onto one is drawn again among the others and reported as fallback "data_issue")
schema = {
  key = {type = "string", doc = "ignored (weighted.lua is not sticky); accepted so endpoints can pass it"},
  avoid_data_issues = {type = "boolean", doc = "skip variants fed by a feature view with an open issue"},
}

local random = math.random

local function pick(variants, weights, skip, total)
  local r = random() * total
  local acc = 0
  for i = 1, #variants do
    if not (skip and skip[variants[i]]) then
      acc = acc + weights[i]
      if r < acc then return variants[i] end
    end
  end
  return nil
end

function route(req, ctx)
  local variants, weights, issues = ctx.variants, ctx.weights, ctx.issues
  local total = 0
  for i = 1, #variants do total = total + weights[i] end
  local variant = pick(variants, weights, nil, total)
  if not (ctx.config.avoid_data_issues and variant and issues[variant]) then return variant or ctx.default end
  -- Drawn onto a variant with an open data issue: draw again among the others, and say why.
  local rest = 0
  for i = 1, #variants do
    if not issues[variants[i]] then rest = rest + weights[i] end
  end
  if rest <= 0 then return ctx.default, nil, "data_issue" end
  return pick(variants, weights, issues, rest) or ctx.default, nil, "data_issue"
end
