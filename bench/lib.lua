-- Shared by the wrk scripts in bench/: the bearer token, thread ids, counting every non-2xx answer,
-- and one machine-readable summary line ("BENCH_JSON {...}") that bench/run.py parses.
--
-- A script does:  local lib = dofile(<its folder> .. "lib.lua"); lib.install()
-- and then defines request() if it needs one. The token comes from the environment (BENCH_TOKEN),
-- so it never shows in a process listing.

local lib = {}

local threads = {}
local next_thread_id = 0

-- Runs in the main Lua state, once per wrk thread, before the threads start.
function setup(thread)
   next_thread_id = next_thread_id + 1
   thread:set("thread_id", next_thread_id)
   table.insert(threads, thread)
end

-- Per thread (each has its own Lua state): counters read back by done().
non2xx = 0
statuses = {}
first_error = ""

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      local key = tostring(status)
      statuses[key] = (statuses[key] or 0) + 1
      if first_error == "" then
         first_error = key .. " " .. string.sub(body or "", 1, 300)
      end
   end
end

local function json_string(s)
   s = string.gsub(s, '[%c"\\]', function(c)
      if c == '"' then return '\\"' end
      if c == "\\" then return "\\\\" end
      return string.format("\\u%04x", string.byte(c))
   end)
   return '"' .. s .. '"'
end

function done(summary, latency, requests)
   local total_non2xx, by_status, sample = 0, {}, ""
   for _, thread in ipairs(threads) do
      total_non2xx = total_non2xx + (thread:get("non2xx") or 0)
      local counts = thread:get("statuses") or {}
      for status, count in pairs(counts) do
         by_status[status] = (by_status[status] or 0) + count
      end
      local first = thread:get("first_error") or ""
      if sample == "" then sample = first end
   end
   local status_parts = {}
   for status, count in pairs(by_status) do
      table.insert(status_parts, json_string(status) .. ":" .. count)
   end
   local e = summary.errors
   local seconds = summary.duration / 1e6
   -- Latencies in microseconds, as wrk measures them.
   local fields = {
      '"requests":' .. summary.requests,
      '"duration_s":' .. string.format("%.3f", seconds),
      '"requests_per_s":' .. string.format("%.1f", summary.requests / seconds),
      '"bytes":' .. summary.bytes,
      '"latency_us":{"mean":' .. string.format("%.1f", latency.mean)
         .. ',"stdev":' .. string.format("%.1f", latency.stdev)
         .. ',"min":' .. latency.min .. ',"max":' .. latency.max
         .. ',"p50":' .. latency:percentile(50) .. ',"p90":' .. latency:percentile(90)
         .. ',"p99":' .. latency:percentile(99) .. ',"p999":' .. latency:percentile(99.9) .. '}',
      '"non2xx":' .. total_non2xx,
      '"non2xx_by_status":{' .. table.concat(status_parts, ",") .. '}',
      '"socket_errors":{"connect":' .. e.connect .. ',"read":' .. e.read .. ',"write":' .. e.write
         .. ',"timeout":' .. e.timeout .. '}',
      '"wrk_status_errors":' .. e.status,
      '"first_error":' .. json_string(sample),
   }
   io.write("BENCH_JSON {" .. table.concat(fields, ",") .. "}\n")
end

-- Call from the script's top level: the Authorization header on every request.
function lib.install()
   local token = os.getenv("BENCH_TOKEN")
   if token == nil or token == "" then
      error("BENCH_TOKEN is not set")
   end
   wrk.headers["Authorization"] = "Bearer " .. token
end

return lib
