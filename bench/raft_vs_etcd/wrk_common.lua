-- Shared by put_etcd.lua and put_tern.lua: thread ids, a random value, and done() writing
-- one JSON line (counts, errors, latency quantiles) to $WRK_OUT for raftbench.py wrk-merge.

VALUE_SIZE = tonumber(os.getenv("VALUE_SIZE") or "256")

-- setup() runs in the main Lua state before the threads start; thread_id is then a global
-- in each thread's own state, read by init().
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

-- The same pseudo-random bytes for both systems (seeded by thread id): neither store can
-- gain from compressing the values.
function random_value(size, seed)
  math.randomseed(seed)
  local bytes = {}
  for i = 1, size do
    bytes[i] = string.char(math.random(0, 255))
  end
  return table.concat(bytes)
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1) ..
      (b and b64chars:sub(c3 + 1, c3 + 1) or "=") .. (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

-- Quantile points (percent, microseconds): fine steps in the tail, where the merge of
-- several wrk processes interpolates between them.
local function quantile_points(latency)
  local points = {}
  local p = 0.5
  while p <= 90.0001 do points[#points + 1] = p; p = p + 0.5 end
  p = 90.1
  while p <= 99.0001 do points[#points + 1] = p; p = p + 0.1 end
  p = 99.01
  while p <= 99.9901 do points[#points + 1] = p; p = p + 0.01 end
  local parts = {}
  for _, q in ipairs(points) do
    parts[#parts + 1] = string.format("[%.2f,%d]", q, latency:percentile(q))
  end
  parts[#parts + 1] = string.format("[100,%d]", latency.max)
  return "[" .. table.concat(parts, ",") .. "]"
end

function done(summary, latency, requests)
  local issued, keys = 0, 0
  for _, thread in ipairs(threads) do
    issued = issued + (thread:get("issued") or 0)
    keys = keys + (thread:get("keys") or 0)
  end
  local e = summary.errors
  local line = string.format(
    '{"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_count":%d,"latency_mean_us":%.1f,' ..
    '"latency_min_us":%d,"latency_max_us":%d,"latency_p50_us":%d,"latency_p99_us":%d,' ..
    '"issued":%d,"keys":%d,"quantiles_us":%s}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    summary.requests, latency.mean, latency.min, latency.max, latency:percentile(50),
    latency:percentile(99), issued, keys, quantile_points(latency))
  local path = os.getenv("WRK_OUT")
  if path then
    local f = assert(io.open(path, "a"))
    f:write(line)
    f:close()
  else
    io.write(line)
  end
end
