-- GET /customers/{customer_id} over the loaded customers, chosen at random (ids "1" .. rows).
--   wrk ... -s bench/get_customer.lua URL -- <rows>
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local lib = dofile(here .. "lib.lua")
lib.install()

local rows = 1000000

function init(args)
   rows = tonumber(args[1] or rows)
   math.randomseed(os.time() * 1000 + thread_id)
end

function request()
   return wrk.format("GET", "/customers/" .. math.random(1, rows))
end
