-- plugins/quality/allowed_values.lua: non-null values come from an allowed set.
-- args: column, values (list), min_share (default 1: every value)
-- A failure names the most frequent values outside the set (masked for PII columns).
schema = {
  column = {type = "column", required = true, doc = "the column to check"},
  values = {type = "list", required = true, doc = "the allowed values"},
  min_share = {type = "number", min = 0, max = 1, doc = "smallest share of allowed values (default 1)"},
}

local function quoted(v)
  return type(v) == "string" and string.format("%q", v) or tostring(v)
end

function check(batch, ctx)
  local a = ctx.args
  if type(a.values) ~= "table" then error("allowed_values needs values = {...}") end
  local share, top = batch:column(a.column):allowed_share(a.values, 5)  -- one pass for both
  local min = a.min_share or 1
  local result = {
    status = share >= min and "pass" or "fail",
    observed = share,
    expectation = string.format("share in allowed set >= %s", min),
    message = string.format("%.4f%% of values in %s are allowed", share * 100, a.column),
  }
  if result.status == "fail" then
    local parts = {}
    for i, o in ipairs(top) do parts[i] = string.format("%s (%d)", quoted(o.value), o.count) end
    result.message = result.message .. "; most frequent not allowed: " .. table.concat(parts, ", ")
    result.detail = {not_allowed = top}
  end
  return result
end
