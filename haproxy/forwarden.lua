-- forwarden for HAProxy (2.5+): ask forwarden about every request with core.httpclient.
-- No extra Lua libraries. Set FORWARDEN_ADDR (default 127.0.0.1:4180) in HAProxy's environment.
--
--   global
--       lua-load /etc/haproxy/forwarden.lua
--   frontend ...
--       http-request lua.forwarden-auth if !{ path_beg /oauth2/ }
--       (see haproxy.cfg beside this file for what to do with the answer)

local auth_url = "http://" .. (os.getenv("FORWARDEN_ADDR") or "127.0.0.1:4180") .. "/oauth2/forward-auth"

local identity_headers = {
  "X-Auth-Request-User",
  "X-Auth-Request-Email",
  "X-Auth-Request-Preferred-Username",
  "X-Auth-Request-Groups",
  "X-Auth-Request-Roles",
  "X-Auth-Request-Client-Id",
  -- The signed identity, when identity_jwt is configured.
  "X-Forwarden-Jwt",
}

-- The first value of a response header (httpclient gives each header as a list).
local function header(headers, name)
  if headers == nil then return nil end
  local v = headers[string.lower(name)]
  if type(v) == "table" then return v[0] or v[1] end
  return v
end

-- Whether a client header could be read as one forwarden sets: X-Auth-Request-* and
-- X-Forwarden-*, any case, with dashes or underscores (CGI and WSGI servers read `_` as `-`).
local function forwarden_header(name)
  local n = string.lower(name):gsub("_", "-")
  return n:find("^x%-auth%-request%-") ~= nil or n:find("^x%-forwarden%-") ~= nil
end

core.register_action("forwarden-auth", { "http-req" }, function(txn)
  -- Identity headers come from forwarden only; drop the client's copies first, so that even
  -- an unreachable forwarden cannot let a forged one through.
  for name, _ in pairs(txn.http:req_get_headers()) do
    if forwarden_header(name) then
      txn.http:req_del_header(name)
    end
  end
  local ssl = txn.f:ssl_fc()
  local headers = {
    ["X-Forwarded-Proto"] = { (ssl == true or ssl == 1) and "https" or "http" },
    -- The whole Host header as the client sent it (forwarden refuses a list), and the port
    -- HAProxy accepted the connection on (never a port the client wrote).
    ["X-Forwarded-Host"] = { txn.f:req_fhdr("host") or "" },
    ["X-Forwarded-Port"] = { tostring(txn.f:dst_port() or "") },
    ["X-Forwarded-Uri"] = { txn.f:pathq() or "/" },
    ["X-Forwarded-Method"] = { txn.f:method() or "GET" },
    ["X-Forwarded-For"] = { txn.f:src() or "" },
    ["Cookie"] = { txn.f:req_fhdr("cookie") or "" },
    -- A bearer token (with bearer: in forwarden.yaml; ignored without).
    ["Authorization"] = { txn.f:req_fhdr("authorization") or "" },
    ["Accept"] = { txn.f:req_fhdr("accept") or "" },
    ["Access-Control-Request-Method"] = { txn.f:req_fhdr("access-control-request-method") or "" },
  }
  local ok, res = pcall(function()
    return core.httpclient():get({ url = auth_url, headers = headers, timeout = 5000 })
  end)
  if not ok or res == nil or res.status == nil then
    core.Warning("forwarden: auth request failed: " .. tostring(res))
    txn:set_var("txn.forwarden_status", 503)
    return
  end
  txn:set_var("txn.forwarden_status", res.status)
  if res.status == 200 then
    for _, name in ipairs(identity_headers) do
      local v = header(res.headers, name)
      if v ~= nil and v ~= "" then
        txn.http:req_set_header(name, v)
      end
    end
    -- The client's cookies without forwarden's session cookie (a credential for every app
    -- behind this forwarden): forwarden answers each allowed check with them. None left (or
    -- no answer), the app gets no Cookie header rather than the session.
    local cookie = header(res.headers, "Cookie")
    if cookie ~= nil and cookie ~= "" then
      txn.http:req_set_header("Cookie", cookie)
    else
      txn.http:req_del_header("Cookie")
    end
  elseif res.status == 302 then
    txn:set_var("txn.forwarden_location", header(res.headers, "Location") or "/")
  else
    -- One line: haproxy.cfg's lf-string would print a newline as a literal %0A.
    txn:set_var("txn.forwarden_body", (string.gsub(res.body or "", "[\r\n]+", " ")))
    txn:set_var("txn.forwarden_type", header(res.headers, "Content-Type") or "text/plain")
    -- An API client's 401 with bearer: on carries RFC 6750's challenge.
    local challenge = header(res.headers, "WWW-Authenticate")
    if challenge ~= nil and challenge ~= "" then
      txn:set_var("txn.forwarden_www_authenticate", challenge)
    end
  end
end)
