-- plugins/routing/shadow.lua: serve the champion, mirror every request to the challenger(s).
-- The endpoint runs shadows after the answer is computed and never lets their result or failure
-- reach the response.
--
-- config: serve   variant that answers (default: the endpoint's default variant)
--         shadow  variant name or list of names to mirror to (default: every other variant)
schema = {
  serve = {type = "string", doc = "variant that answers (default: the endpoint's default)"},
  shadow = {type = "any", doc = "variant name or list of names to mirror to (default: all others)"},
  key = {type = "string", doc = "the endpoint's entity key (unused)"},
}

function route(req, ctx)
  local cfg = ctx.config
  local serve = cfg.serve or ctx.default
  local shadows = ctx.shadow_list
  if shadows == nil then
    shadows = {}
    local s = cfg.shadow
    if type(s) == "string" then
      shadows[1] = s
    elseif type(s) == "table" then
      for i = 1, #s do shadows[i] = s[i] end
    else
      for _, name in ipairs(ctx.variants) do
        if name ~= serve then shadows[#shadows + 1] = name end
      end
    end
    ctx.shadow_list = shadows
  end
  return serve, shadows
end
