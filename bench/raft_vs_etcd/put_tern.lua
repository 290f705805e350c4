-- wrk script: S3 PUT of VALUE_SIZE-byte objects through presigned URLs (SigV4 cannot be
-- computed in wrk's Lua). Thread t reads its own slice, $URL_FILE.t, one request target per
-- line, and cycles through it; raftbench.py presign wrote them, one distinct key each.
dofile(os.getenv("BENCH_LUA_DIR") .. "/wrk_common.lua")

local headers = {}

function init(args)
  paths = {}
  for line in io.lines(os.getenv("URL_FILE") .. "." .. thread_id) do
    paths[#paths + 1] = line
  end
  keys = #paths
  assert(keys > 0, "no presigned URLs for thread " .. thread_id)
  body = random_value(VALUE_SIZE, thread_id)
  issued = 0
end

function request()
  issued = issued + 1
  return wrk.format("PUT", paths[(issued - 1) % keys + 1], headers, body)
end
