-- plugins/routing/sticky.lua: a user keeps their variant across requests, processes and restarts.
--
-- Weighted rendezvous hashing: each variant scores -ln(1 - bucket(key, salt:variant)) / weight and the
-- lowest score wins. A user's variant depends only on their key, the salt and the weights, so it is
-- the same in every process. Each variant wins with probability weight / sum(weights), and raising one
-- variant's weight (10% -> 20%) only moves users INTO that variant: no user switches between two
-- variants whose weights did not grow, whatever the number of variants.
--
-- config: key     request field holding the sticky key (default "user_id"; endpoints set the
--                 entity's join key)
--         salt    hashing salt (default: the endpoint name); change it to reshuffle everyone
--         avoid_data_issues  true: never pick a variant fed by a feature view with an open issue;
--                 a request moved off its variant returns "data_issue" third (counted as a fallback)
schema = {
  key = {type = "string", doc = "request field holding the sticky key (default user_id)"},
  salt = {type = "string", doc = "hashing salt (default: the endpoint name)"},
  avoid_data_issues = {type = "boolean", doc = "skip variants fed by a feature view with an open issue"},
}

local log = math.log

function route(req, ctx)
  local cfg = ctx.config
  local key = req[cfg.key or "user_id"]
  if key == nil then
    error("request has no sticky key '" .. (cfg.key or "user_id") .. "'")
  end
  -- Per-variant salts, built once per ctx (ctx is rebuilt when the weights change).
  local salts = ctx.salts
  if salts == nil then
    salts = {}
    for i, name in ipairs(ctx.variants) do salts[i] = ctx.salt .. ":" .. name end
    ctx.salts = salts
  end
  local variants, weights, issues = ctx.variants, ctx.weights, ctx.issues
  local avoid = cfg.avoid_data_issues
  local bucket = ctx.bucket
  local best, best_score = nil, math.huge
  local first, first_score = nil, math.huge  -- the pick with no variant avoided
  for i = 1, #variants do
    local w = weights[i]
    if w > 0 then
      local score = -log(1.0 - bucket(key, salts[i])) / w
      if score < first_score then first, first_score = variants[i], score end
      if score < best_score and not (avoid and issues[variants[i]]) then best, best_score = variants[i], score end
    end
  end
  -- Moving a user off their variant because of a data issue is reported, never silent.
  best = best or ctx.default
  if best ~= first then return best, nil, "data_issue" end
  return best
end
