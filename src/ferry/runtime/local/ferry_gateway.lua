-- The local cluster's routes, live in nginx: which API answers a path, over which replica.
--
-- The nginx configuration (nginx_conf.py) is static: it never names an API. The routes
-- live in a file ferry writes (routes.tsv, rendered by nginx_conf.render_routes) that
-- this module reads into a shared dict when nginx starts and whenever ferry asks it to
-- (POST /_ferry/routes), so adding, changing or deleting an API never reloads nginx and
-- never closes a client's kept-alive connection. Each worker parses the routes again when
-- their version changes.
--
-- route()/runtime() run in the rewrite phase: they pick the API (a splitter draws one by
-- weight, and draws whether its shadow gets a copy), set $ferry_api and $ferry_path, and
-- hand over to the location that proxies (with the mirror, or SageMaker's error pages) when
-- the request needs one. balance() runs as the upstream's balancer: least connections
-- among the API's slots under its limit (never a slot at it), skipping a slot that refused
-- within a second (as long as another is left), every slot once before any twice.

local balancer = require "ngx.balancer"

local routes_dict = ngx.shared.ferry_routes
local peers_dict = ngx.shared.ferry_peers

local _M = {}

local RUNTIME = "^/endpoints/([^/]+)/invocations$"
local NAME = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
local BUSY = "no replica could take the request (at capacity or unreachable)"
local VARIANT = "x-Amzn-Invoked-Production-Variant"
local DOWN_FOR = 1 -- seconds a slot that refused a connection is passed over

local routes_file
local cached_version
local cached
local turn = 0 -- rotates the first slot looked at, so ties go round-robin

local function fields(line)
  local out = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    out[#out + 1] = field
  end
  return out
end

local function peer(address)
  local host, port = address:match("^%[([^%]]+)%]:(%d+)$")
  if not host then
    host, port = address:match("^([^:]+):(%d+)$")
  end
  if not host then
    return nil
  end
  return { key = address, host = host, port = tonumber(port) }
end

-- routes.tsv: "digest\tD", "api\tNAME\tENDPOINT\tMAX_CONNS\tADDR,ADDR",
-- "split\tNAME\tENDPOINT\tAPI:WEIGHT,API:WEIGHT\tSHADOW\tSHADOW_WEIGHT"
local function parse(text)
  local t = { digest = "", endpoints = {}, names = {}, apis = {}, known = {} }
  for line in text:gmatch("[^\n]+") do
    local f = fields(line)
    if f[1] == "digest" then
      t.digest = f[2] or ""
    elseif f[1] == "api" then
      local slots = {}
      for address in (f[5] or ""):gmatch("[^,]+") do
        slots[#slots + 1] = peer(address)
      end
      local api = {
        kind = "api", name = f[2], endpoint = f[3], max = tonumber(f[4]) or 1, slots = slots,
      }
      t.apis[api.name] = api
      t.endpoints[api.endpoint] = api
      t.names[api.name] = api
      t.known[#t.known + 1] = api.name
    elseif f[1] == "split" then
      local weights, total = {}, 0
      for api, weight in (f[4] or ""):gmatch("([^,:]+):(%d+)") do
        weight = tonumber(weight)
        if weight > 0 then
          total = total + weight
          weights[#weights + 1] = { api = api, upto = total }
        end
      end
      local split = {
        kind = "split", name = f[2], endpoint = f[3], weights = weights, total = total,
        shadow = (f[5] ~= nil and f[5] ~= "") and f[5] or nil,
        shadow_weight = tonumber(f[6]) or 100,
      }
      t.endpoints[split.endpoint] = split
      t.names[split.name] = split
      t.known[#t.known + 1] = split.name
    end
  end
  table.sort(t.known)
  return t
end

local function read_file(path)
  local file, err = io.open(path, "rb")
  if not file then
    return nil, err
  end
  local text = file:read("*a")
  file:close()
  return text
end

-- Read the routes file into the shared dict; returns its digest, or nil and why.
local function load(path)
  local text, err = read_file(path)
  if not text then
    return nil, err
  end
  local parsed = parse(text)
  local ok, set_err = routes_dict:set("text", text)
  if not ok then
    return nil, "routes do not fit the shared dict: " .. tostring(set_err)
  end
  routes_dict:incr("version", 1, 0)
  return parsed.digest
end

local function routes()
  local version = routes_dict:get("version")
  if version ~= cached_version or cached == nil then
    cached = parse(routes_dict:get("text") or "")
    cached_version = version
  end
  return cached
end

-- Called from init_by_lua with the file ferry writes; nginx may start before it exists.
function _M.init(path)
  routes_file = path
  load(path)
end

function _M.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
end

-- --------------------------------------------------------------- answers of our own

local function send(status, body, headers)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  for name, value in pairs(headers or {}) do
    ngx.header[name] = value
  end
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

-- Names are checked against NAME before they get here (nginx_conf.check), so they need
-- no escaping in JSON.
local function error_json(status, message, code)
  return send(status, '{"error":"' .. message .. '","code":"' .. code .. '"}')
end

local function sagemaker_error(status, kind, message)
  return send(status, '{"message":"' .. message .. '"}', { ["x-amzn-ErrorType"] = kind .. ":" })
end

-- A 503 in the caller's protocol: SageMaker Runtime's error, or ferry's JSON.
local function unavailable(message, runtime)
  if runtime then
    return sagemaker_error(503, "ServiceUnavailable", message)
  end
  return error_json(503, message, "unavailable")
end

-- --------------------------------------------------------------- picking the API

local function conns(slot)
  return peers_dict:get("conns:" .. slot.key) or 0
end

local function has_room(api)
  for _, slot in ipairs(api.slots) do
    if conns(slot) < api.max then
      return true
    end
  end
  return false
end

local function draw(split)
  if split.total <= 0 then
    return nil
  end
  local at = math.random() * split.total
  for _, entry in ipairs(split.weights) do
    if at < entry.upto then
      return entry.api
    end
  end
  return split.weights[#split.weights].api
end

local function shadow_of(t, split)
  local shadow = split.shadow and t.apis[split.shadow]
  if not shadow or #shadow.slots == 0 or split.shadow_weight <= 0 then
    return nil
  end
  if split.shadow_weight >= 100 or math.random() * 100 < split.shadow_weight then
    return shadow.name
  end
  return nil
end

-- Set the variables the proxying locations read, and return the location to go on to
-- (nil: the one it is in), or answer the request here.
local function dispatch(t, route, runtime)
  local name = route.name
  local shadow
  if route.kind == "split" then
    name = draw(route)
    shadow = shadow_of(t, route)
  end
  local api = name and t.apis[name]
  if not api or #api.slots == 0 then
    return unavailable("api " .. (name or route.name) .. " has no ready replica", runtime)
  end
  if not has_room(api) then
    return unavailable(BUSY, runtime)
  end
  ngx.var.ferry_api = api.name
  if runtime then
    ngx.var.ferry_path = "/endpoints/" .. api.name .. "/invocations"
    if route.kind == "split" then
      ngx.var.ferry_variant = api.name
    end
  else
    ngx.var.ferry_path = "/predict"
  end
  if shadow then
    ngx.var.ferry_shadow = shadow
    ngx.var.ferry_copy_kind = runtime and "runtime" or "predict"
    return runtime and "/_ferry/to/runtime+copy" or "/_ferry/to/endpoint+copy"
  end
  return runtime and "/_ferry/to/runtime" or nil
end

-- Go on to ``target``, with the query string (an internal redirect drops it otherwise).
local function hand_over(target)
  return ngx.exec(target, ngx.var.args)
end

-- location /: an API's or splitter's endpoint, else a 404.
function _M.route()
  local t = routes()
  local route = t.endpoints[ngx.var.uri]
  if not route then
    return error_json(404, "no api is routed at this path", "not_found")
  end
  local target = dispatch(t, route, false)
  if target then
    return hand_over(target)
  end
end

-- POST /endpoints/<name>/invocations: SageMaker Runtime's InvokeEndpoint for an API or
-- splitter by name (an endpoint at such a path keeps it).
function _M.runtime()
  local t = routes()
  local uri = ngx.var.uri
  local route = t.endpoints[uri]
  if route then
    return hand_over(dispatch(t, route, false) or "/_ferry/to/endpoint")
  end
  local name = uri:match(RUNTIME)
  route = name and t.names[name]
  if route then
    return hand_over(dispatch(t, route, true))
  end
  local known = #t.known > 0 and table.concat(t.known, ", ") or "none"
  local served = "not found; the gateway serves the endpoints: " .. known
  if name and name:match(NAME) then
    return sagemaker_error(400, "ValidationError", "Endpoint " .. name .. " " .. served)
  end
  return sagemaker_error(400, "ValidationError", "Endpoint " .. served)
end

-- /_ferry/relay/<api>/<predict|runtime>: a shadow copy on its way to the shadow API.
function _M.relay()
  local api, kind = ngx.var.uri:match("^/_ferry/relay/([^/]+)/([a-z]+)$")
  if not api then
    return ngx.exit(404)
  end
  ngx.var.ferry_api = api
  ngx.var.ferry_path = kind == "runtime" and ("/endpoints/" .. api .. "/invocations")
    or "/predict"
end

-- GET: the digest of the routes in force; POST: read the routes file again first.
function _M.routes_endpoint()
  if ngx.req.get_method() == "POST" then
    local digest, err = load(routes_file)
    if not digest then
      return send(500, '{"error":"cannot read the routes: ' .. tostring(err):gsub('"', "'") .. '"}')
    end
  end
  return send(200, '{"routes":"' .. routes().digest .. '"}')
end

-- --------------------------------------------------------------- the balancer
--
-- A request's slot is counted in the shared dict while it is in flight there, and named
-- in $ferry_slot (not ngx.ctx: an error_page redirect, say to the 504 JSON, clears ngx.ctx
-- but keeps variables) so that the log phase takes it off whatever way the request ended.
-- Shadow copies (subrequests) are not counted: they have no log phase of their own.

local REFUSED_HOST, REFUSED_PORT = "127.0.0.1", 0 -- always refused: ends in nginx's 502

local function release()
  local key = ngx.var.ferry_slot
  if key == nil or key == "" then
    return
  end
  ngx.var.ferry_slot = ""
  local left = peers_dict:incr("conns:" .. key, -1, 0)
  if left and left < 0 then
    peers_dict:set("conns:" .. key, 0)
  end
end

-- The slot for the next try: never one at the API's limit; one not tried yet in this
-- request before one tried already (a kept-alive connection the replica had closed fails
-- too, and nginx grants that one more try), one not refused in the last second before
-- one that was, then the fewest connections (ties in turn).
local function choose(api, tried)
  local slots = api.slots
  local count = #slots
  turn = turn + 1
  local best, best_rank, best_conns
  for i = 0, count - 1 do
    local slot = slots[(turn + i) % count + 1]
    local times = tried[slot.key] or 0
    local n = conns(slot)
    if times < 2 and n < api.max then
      local rank = times * 2
      if peers_dict:get("down:" .. slot.key) then
        rank = rank + 1
      end
      if best == nil or rank < best_rank or (rank == best_rank and n < best_conns) then
        best, best_rank, best_conns = slot, rank, n
      end
    end
  end
  return best
end

local function refuse(message)
  ngx.log(ngx.INFO, "ferry gateway: ", message)
  local ok, err = balancer.set_current_peer(REFUSED_HOST, REFUSED_PORT)
  if not ok then
    ngx.log(ngx.ERR, "ferry gateway: ", err)
    return ngx.exit(ngx.ERROR)
  end
end

function _M.balance()
  local ctx = ngx.ctx
  local counted = not ngx.is_subrequest
  if ctx.tried then -- nginx goes on to the next slot: this one refused, reset or said 503
    local state, status = balancer.get_last_failure()
    -- a 503 or 429 came from a live replica (loading, or over its limit): not down
    if state == "failed" and status ~= 503 and status ~= 429 and ctx.slot then
      peers_dict:set("down:" .. ctx.slot.key, true, DOWN_FOR)
    end
    if counted then
      release()
    end
    ctx.slot = nil
  end
  local api = routes().apis[ngx.var.ferry_api]
  if not api or #api.slots == 0 then -- deleted since the request was routed
    return refuse("api " .. tostring(ngx.var.ferry_api) .. " is no longer routed")
  end
  if not ctx.tried then
    ctx.tried = {}
    if #api.slots > 1 then
      balancer.set_more_tries(#api.slots - 1)
    end
  end
  local slot = choose(api, ctx.tried)
  if not slot then -- every slot is at its limit or was tried: the 503 JSON
    return refuse("no slot of api " .. api.name .. " can take the request")
  end
  ctx.tried[slot.key] = (ctx.tried[slot.key] or 0) + 1
  ctx.slot = slot
  if counted then
    peers_dict:incr("conns:" .. slot.key, 1, 0)
    ngx.var.ferry_slot = slot.key
  end
  local ok, err = balancer.set_current_peer(slot.host, slot.port)
  if not ok then
    ngx.log(ngx.ERR, "ferry gateway: cannot use ", slot.key, ": ", err)
    if counted then
      release()
    end
    return ngx.exit(ngx.ERROR)
  end
end

-- header filter of a runtime call: a splitter's answer names the API that gave it, as
-- SageMaker names the production variant (an API's own answer keeps the replica's).
function _M.variant()
  local variant = ngx.var.ferry_variant
  if variant and variant ~= "" then
    ngx.header[VARIANT] = variant
  end
end

-- log phase: the request is done with its slot (main requests only; variables are
-- shared with subrequests, which never set $ferry_slot).
function _M.done()
  if not ngx.is_subrequest then
    release()
  end
end

return _M
