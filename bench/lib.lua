-- Shared by the wrk scripts in bench/: the bearer token, thread ids, counting every non-2xx answer,
-- answers per time slice, pacing, and one machine-readable summary line ("BENCH_JSON {...}") that
-- bench/run.py parses.
--
-- A script does:  local lib = dofile(<its folder> .. "lib.lua"); lib.install()
-- and then defines request() if it needs one. The token comes from the environment (BENCH_TOKEN),
-- so it never shows in a process listing. Also from the environment:
--   BENCH_SLICE_SECONDS  answers are counted per slice of this many seconds from the thread's start
--                        (the run's req/s over time: a slope shows);
--   BENCH_THREAD_RATE    requests per second each wrk thread offers, paced by delay(): a fixed
--                        offered load instead of a closed loop (a request waits for its slot, not for
--                        the previous answer; behind schedule, it goes at once).

local lib = {}

-- A monotonic clock in microseconds (LuaJIT's ffi: wrk gives Lua no clock finer than os.time()).
local ffi_ok, ffi = pcall(require, "ffi")
local now_us = nil
if ffi_ok then
   ffi.cdef[[
      typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
      int clock_gettime(int clk_id, bench_timespec *tp);
   ]]
   local ts = ffi.new("bench_timespec")
   now_us = function()
      ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
   end
end

local slice_us = tonumber(os.getenv("BENCH_SLICE_SECONDS") or "")
if slice_us ~= nil then slice_us = slice_us * 1e6 end
started_us = nil  -- set by setup()
slices = {}  -- per thread: answers in slice i (1-based), read back by done()

local threads = {}
local next_thread_id = 0

-- Runs in the main Lua state, once per wrk thread, before the threads start.
function setup(thread)
   next_thread_id = next_thread_id + 1
   thread:set("thread_id", next_thread_id)
   if now_us ~= nil then thread:set("started_us", now_us()) end  -- one origin for every thread's slices
   table.insert(threads, thread)
end

local thread_rate = tonumber(os.getenv("BENCH_THREAD_RATE") or "")
if thread_rate ~= nil and thread_rate > 0 then
   if now_us == nil then error("BENCH_THREAD_RATE needs LuaJIT's ffi for its clock") end
   local interval_us = 1e6 / thread_rate
   local next_us = nil
   -- wrk calls delay() before each request of the thread (all its connections share this schedule);
   -- the answer is in ms, and wrk truncates it: the slots themselves never drift, only a send can be
   -- up to 1 ms early.
   function delay()
      local now = now_us()
      if next_us == nil or now - next_us > 1e6 then next_us = now end  -- a second behind: drop the backlog
      next_us = next_us + interval_us
      local wait = next_us - now
      if wait <= 0 then return 0 end
      return wait / 1000
   end
end

-- Per thread (each has its own Lua state): counters read back by done().
non2xx = 0
statuses = {}
first_error = ""

function response(status, headers, body)
   if slice_us ~= nil and now_us ~= nil then
      local i = math.floor((now_us() - started_us) / slice_us) + 1
      slices[i] = (slices[i] or 0) + 1
   end
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
   local by_slice = {}
   for _, thread in ipairs(threads) do
      for i, count in pairs(thread:get("slices") or {}) do
         by_slice[i] = (by_slice[i] or 0) + count
      end
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
   local slice_parts, last = {}, 0
   for i, _ in pairs(by_slice) do
      if i > last then last = i end
   end
   for i = 1, last do
      table.insert(slice_parts, tostring(by_slice[i] or 0))
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
      '"answers_by_slice":[' .. table.concat(slice_parts, ",") .. ']',
      '"slice_seconds":' .. (slice_us and string.format("%.3f", slice_us / 1e6) or "null"),
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
