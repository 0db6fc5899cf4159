-- plugins/quality/freshness.lua: the newest timestamp is at most max_age old.
-- args: column (timestamps), max_age (seconds, or "90s", "30m", "6h", "2d")
schema = {
  column = {type = "column", required = true, doc = "the timestamp column"},
  max_age = {type = "any", doc = "seconds, or '90s', '30m', '6h', '2d' (default '1d')"},
}

local units = {s = 1, m = 60, h = 3600, d = 86400}

local function seconds(v)
  if type(v) == "number" then return v end
  local n, u = string.match(tostring(v), "^(%d+%.?%d*)%s*([smhd])$")
  if not n then error("max_age must be seconds or like '6h', got " .. tostring(v)) end
  return tonumber(n) * units[u]
end

function check(batch, ctx)
  local a = ctx.args
  local limit = seconds(a.max_age or "1d")
  local newest = batch:column(a.column):max()
  local now = ctx.now or os.time()
  if newest == nil then
    return {status = "fail", observed = nil, expectation = "age <= " .. limit .. "s", message = "no timestamps"}
  end
  local age = now - newest
  return {
    status = age <= limit and "pass" or "fail",
    observed = age,
    expectation = string.format("newest %s at most %ds old", a.column, limit),
    message = string.format("newest value is %.0fs old", age),
  }
end
