-- plugins/quality/unique.lua: no non-null value appears twice.
-- args: column
schema = {
  column = {type = "column", required = true, doc = "the column whose values must not repeat"},
}

function check(batch, ctx)
  local a = ctx.args
  local col = batch:column(a.column)
  local dups = col:duplicate_count()
  return {
    status = dups == 0 and "pass" or "fail",
    observed = dups,
    expectation = a.column .. " is unique",
    message = string.format("%d duplicate values among %d (%d distinct)", dups, col:count(), col:distinct_count()),
  }
end
