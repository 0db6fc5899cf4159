-- plugins/quality/not_null.lua: a column has no nulls (or at most max_null_rate of them).
-- args: column, max_null_rate (default 0)
schema = {
  column = {type = "column", required = true, doc = "the column to check"},
  max_null_rate = {type = "number", min = 0, max = 1, doc = "largest share of nulls allowed (default 0)"},
}

function check(batch, ctx)
  local a = ctx.args
  local col = batch:column(a.column)
  local rate = col:null_rate()
  local max = a.max_null_rate or 0
  return {
    status = rate <= max and "pass" or "fail",
    observed = rate,
    expectation = "null rate <= " .. max,
    message = string.format("%d of %d values in %s are null", col:null_count(), batch.rows, a.column),
  }
end
