-- plugins/quality/drift_psi.lua: population stability index against the stored reference profile.
-- args: column, warn (default 0.1), fail (default 0.25)
-- The reference comes from ctx.references[column]; `needs` below asks the host for it, so a
-- feature view stores one from its first accepted batch (or set it explicitly). Without one the
-- rule passes and says so.
needs = {"reference_profile"}
schema = {
  column = {type = "column", required = true, doc = "the column compared with its reference profile"},
  warn = {type = "number", min = 0, doc = "PSI that warns (default 0.1)"},
  fail = {type = "number", min = 0, doc = "PSI that fails (default 0.25)"},
}

function check(batch, ctx)
  local a = ctx.args
  local warn, fail = a.warn or 0.1, a.fail or 0.25
  local ref = ctx.references and ctx.references[a.column]
  if ref == nil then
    return {status = "pass", observed = nil, expectation = "psi < " .. fail,
            message = "no reference profile for " .. a.column .. " yet"}
  end
  local psi = batch:column(a.column):psi(ref)
  if psi == nil then
    return {status = "pass", observed = nil, expectation = "psi < " .. fail,
            message = "no non-null values in " .. a.column .. " to compare with its reference"}
  end
  local status = "pass"
  if psi >= fail then status = "fail" elseif psi >= warn then status = "warn" end
  return {
    status = status,
    observed = psi,
    expectation = string.format("psi < %s (warn at %s)", fail, warn),
    message = string.format("PSI of %s vs reference is %.4f", a.column, psi),
  }
end
