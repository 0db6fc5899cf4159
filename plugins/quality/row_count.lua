-- plugins/quality/row_count.lua: the batch has between min and max rows.
-- args: min (default 1), max (optional)
schema = {
  min = {type = "integer", min = 0, doc = "fewest rows allowed (default 1)"},
  max = {type = "integer", min = 0, doc = "most rows allowed"},
}

function check(batch, ctx)
  local a = ctx.args
  local n, min, max = batch.rows, a.min or 1, a.max
  local ok = n >= min and (max == nil or n <= max)
  return {
    status = ok and "pass" or "fail",
    observed = n,
    expectation = max and string.format("%d <= rows <= %d", min, max) or string.format("rows >= %d", min),
    message = string.format("batch has %d rows", n),
  }
end
