-- plugins/quality/pattern.lua: non-null values match a regular expression (RE2 syntax).
-- args: column, pattern, min_share (default 1: every value)
-- The pattern matches anywhere in a value: anchor it (^...$) to match whole values.
schema = {
  column = {type = "column", required = true, doc = "the column to check"},
  pattern = {type = "pattern", required = true, doc = "an RE2 regular expression, e.g. '^[^@]+@[^@]+$'"},
  min_share = {type = "number", min = 0, max = 1, doc = "smallest share of matching values (default 1)"},
}

function check(batch, ctx)
  local a = ctx.args
  local share = batch:column(a.column):pattern_share(a.pattern)
  local min = a.min_share or 1
  return {
    status = share >= min and "pass" or "fail",
    observed = share,
    expectation = string.format("share matching %s >= %s", a.pattern, min),
    message = string.format("%.4f%% of values in %s match %s", share * 100, a.column, a.pattern),
  }
end
