-- plugins/quality/allowed_values.lua: non-null values come from an allowed set.
-- args: column, values (list), min_share (default 1: every value)
schema = {
  column = {type = "string", required = true, doc = "the column to check"},
  values = {type = "list", required = true, doc = "the allowed values"},
  min_share = {type = "number", doc = "smallest share of allowed values (default 1)"},
}

function check(batch, ctx)
  local a = ctx.args
  if type(a.values) ~= "table" then error("allowed_values needs values = {...}") end
  local share = batch:column(a.column):allowed_share(a.values)
  local min = a.min_share or 1
  return {
    status = share >= min and "pass" or "fail",
    observed = share,
    expectation = string.format("share in allowed set >= %s", min),
    message = string.format("%.4f%% of values in %s are allowed", share * 100, a.column),
  }
end
