-- plugins/quality/range.lua: every non-null value lies in [min, max] (either bound optional).
-- args: column, min, max
schema = {
  column = {type = "column", required = true, doc = "the numeric or timestamp column to check"},
  min = {type = "number", doc = "smallest value allowed"},
  max = {type = "number", doc = "largest value allowed"},
}

function check(batch, ctx)
  local a = ctx.args
  local col = batch:column(a.column)
  local bad = col:count_outside(a.min, a.max)
  local lo, hi = col:min(), col:max()
  local expect = string.format("%s <= %s <= %s", a.min ~= nil and a.min or "-inf", a.column,
                               a.max ~= nil and a.max or "inf")
  return {
    status = bad == 0 and "pass" or "fail",
    observed = bad,
    expectation = expect,
    message = string.format("%d values out of range (observed min %s, max %s)", bad, tostring(lo), tostring(hi)),
  }
end
