-- bench/wrk_post.lua: wrk POSTs JSON bodies for random players (bench_server.py runs it).
--
-- Every request is formatted once, in init, into a pool; each request then picks one at random, so
-- wrk (which shares the machine with the server) spends no time building bodies under load.
-- Environment (all optional but WRK_PATH):
--   WRK_PATH      the route, e.g. /v1/endpoints/churn/predict
--   WRK_TOKEN     sent as "Authorization: Bearer <token>"
--   WRK_ACCEPT    the Accept header (default application/json)
--   WRK_PLAYERS   ids are drawn from [0, WRK_PLAYERS) (default 100000)
--   WRK_ENTITIES  0: bodies {"player_id": id}; n > 0: {"features": [...], "entities": {"player_id":
--                 [n ids]}} with WRK_FEATURES (comma-separated "view:column" refs)
--   WRK_BODIES    a file of ready bodies, one JSON document a line (used instead of the above: a peer
--                 whose request carries the feature values itself)
--   WRK_POOL      how many requests the pool holds (default 10000)

local pool = {}

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

function init(args)
  local path = env("WRK_PATH", "/")
  local headers = {["Content-Type"] = "application/json", ["Accept"] = env("WRK_ACCEPT", "application/json")}
  local token = env("WRK_TOKEN", nil)
  if token then headers["Authorization"] = "Bearer " .. token end
  local players = tonumber(env("WRK_PLAYERS", "100000"))
  local entities = tonumber(env("WRK_ENTITIES", "0"))
  local size = tonumber(env("WRK_POOL", "10000"))
  -- Threads share no state: each seeds its own generator (the address of a fresh table differs).
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)

  local file = env("WRK_BODIES", nil)
  if file then
    for line in io.lines(file) do
      if #line > 0 then pool[#pool + 1] = wrk.format("POST", path, headers, line) end
    end
    return
  end
  local features = {}
  for ref in env("WRK_FEATURES", ""):gmatch("[^,]+") do features[#features + 1] = '"' .. ref .. '"' end
  local prefix = '{"features": [' .. table.concat(features, ", ") .. '], "entities": {"player_id": ['
  for i = 1, size do
    local body
    if entities == 0 then
      body = '{"player_id": ' .. math.random(0, players - 1) .. '}'
    else
      local ids = {}
      for j = 1, entities do ids[j] = math.random(0, players - 1) end
      body = prefix .. table.concat(ids, ", ") .. ']}}'
    end
    pool[i] = wrk.format("POST", path, headers, body)
  end
end

function request()
  return pool[math.random(1, #pool)]
end
