-- plugins/routing/tenant.lua: a model per tenant (several game studios on one service).
--
-- config: tenants  map tenant -> variant, e.g. {["studio-a"] = "champion", ["studio-b"] = "b"}
--         field    request field naming the tenant (default "tenant")
--         default  variant for tenants not in the map (default: the endpoint's default variant)
--         avoid_data_issues  true: a tenant whose variant has an open data issue gets the default
schema = {
  tenants = {type = "map", doc = "tenant -> variant"},
  field = {type = "string", doc = "request field naming the tenant (default tenant)"},
  default = {type = "string", doc = "variant for tenants not in the map"},
  key = {type = "string", doc = "the endpoint's entity key (unused)"},
  avoid_data_issues = {type = "boolean", doc = "an unmapped or affected tenant gets the default"},
}

function route(req, ctx)
  local cfg = ctx.config
  local tenant = req[cfg.field or "tenant"]
  local variant = tenant and cfg.tenants and cfg.tenants[tenant]
  if variant == nil then return cfg.default or ctx.default end
  if cfg.avoid_data_issues and ctx.issues[variant] then return cfg.default or ctx.default, nil, "data_issue" end
  return variant
end
