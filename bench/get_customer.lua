-- GET /customers/{customer_id} for customers chosen at random: the loaded ones ("1" .. rows), or the
-- customer_ids listed one per line in a file (a database filled by the bench's own creates).
--   wrk ... -s bench/get_customer.lua URL -- <rows> | @<file of customer_ids>
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local lib = dofile(here .. "lib.lua")
lib.install()

local rows = 1000000
local ids = nil

function init(args)
   local source = args[1] or tostring(rows)
   if source:sub(1, 1) == "@" then
      ids = {}
      for line in io.lines(source:sub(2)) do
         if line ~= "" then table.insert(ids, line) end
      end
      if #ids == 0 then error("no customer_ids in " .. source:sub(2)) end
   else
      rows = tonumber(source)
   end
   math.randomseed(os.time() * 1000 + thread_id)
end

function request()
   if ids ~= nil then
      return wrk.format("GET", "/customers/" .. ids[math.random(1, #ids)])
   end
   return wrk.format("GET", "/customers/" .. math.random(1, rows))
end
