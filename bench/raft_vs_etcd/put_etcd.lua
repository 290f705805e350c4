-- wrk script: PUT of distinct keys with VALUE_SIZE-byte values through etcd's v3 JSON
-- gateway (POST /v3/kv/put, key and value base64). Keys: $KEY_PREFIX<thread>-<counter>.
dofile(os.getenv("BENCH_LUA_DIR") .. "/wrk_common.lua")

local headers = {["Content-Type"] = "application/json"}
local prefix = os.getenv("KEY_PREFIX") or "bench/"

function init(args)
  value_b64 = base64(random_value(VALUE_SIZE, thread_id))
  issued = 0
  keys = 0 -- unbounded: every request has a fresh key
end

function request()
  issued = issued + 1
  local key = string.format("%s%02d-%012d", prefix, thread_id, issued)
  local body = '{"key":"' .. base64(key) .. '","value":"' .. value_b64 .. '"}'
  return wrk.format("POST", "/v3/kv/put", headers, body)
end
