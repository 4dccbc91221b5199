-- POST /customers with valid, unique bodies.
--   wrk ... -s bench/post_customers.lua URL -- <run tag> <area code> [<account_id>]
-- customer_id, email, phone and address line are unique per request (thread id + counter, and the
-- run tag), so no request conflicts and no duplicate-customer warning fires. The phone number is a
-- valid E.164 US number in the given area code (one area code per run). With an account_id, every
-- customer is also linked to that account (assign_to_accounts, one PRIMARY link, no card config).
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local lib = dofile(here .. "lib.lua")
lib.install()

local tag, area, account_id = "run", "212", nil
local counter = 0

function init(args)
   tag = args[1] or tag
   area = args[2] or area
   account_id = args[3]
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local n = thread_id * 10000000 + counter
   local id = tag .. "-" .. thread_id .. "-" .. counter
   local body = '{"customer_id":"' .. id .. '"'
      .. ',"name_first":"Pat","name_last":"Bench","name_middle":"Q"'
      .. ',"phone_number":"+1' .. area .. string.format("%07d", 2000000 + n % 8000000) .. '"'
      .. ',"address_line_one":"' .. counter .. ' Bench Street ' .. tag .. '-' .. thread_id .. '"'
      .. ',"address_city":"Springfield","address_state":"IL","address_zip":"62704"'
      .. ',"address_country_code":"US"'
      .. ',"email":"' .. id .. '@bench.example.com","date_of_birth":"1985-06-20"'
   if account_id ~= nil then
      body = body .. ',"assign_to_accounts":[{"account_id":"' .. account_id
         .. '","customer_account_role":"PRIMARY"}]'
   end
   body = body .. "}"
   return wrk.format(nil, "/customers", nil, body)
end
