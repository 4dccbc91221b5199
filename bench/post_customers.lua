-- POST /customers with valid bodies, every value unique or repeated as real customers repeat them.
--   wrk ... -s bench/post_customers.lua URL -- <run tag> <area code> [<account_id> | -] [unique | repeated] [<base>]
-- customer_id and email are unique per request (run tag, thread id, counter). The phone number is a
-- valid E.164 US number in the given area code (one area code per run, so runs never share one).
--
-- unique (the default): phone and address line are unique too, so no duplicate-customer warning fires.
-- repeated: customer number n = base + thread id * 10^6 + counter follows bench/run.py's
-- LOAD_SQL_REPEATED rules (keep the two in step):
--   - families: the 4 customers of n // 4 share last name, phone and address when (n // 4) % 5 == 0
--     (a fifth of all customers);
--   - 2% (n % 50 == 7) live at one of 4 addresses (an office, apartment blocks) that the loaded rows
--     share by the thousand;
--   - last names are 16 common surnames, except 1 in 100 (n % 100 == 11) with a name of its own;
--   - every customer has an SSN of its own (encrypted and hashed by the service, as in production).
-- With an account_id, every customer is also linked to that account (one PRIMARY link, no card config).
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local lib = dofile(here .. "lib.lua")
lib.install()

local tag, area, account_id, mode, base = "run", "212", nil, "unique", 0
local counter = 0

local SURNAMES = {"Garcia", "Smith", "Nguyen", "Johnson", "Kim", "Patel", "Brown", "Lopez", "Williams", "Chen",
                  "Jones", "Miller", "Davis", "Rodriguez", "Martinez", "Wilson"}
local HOT = {
   {'1 Corporate Plaza', 'New York', 'NY', '10001'}, {'350 Fifth Avenue', 'New York', 'NY', '10118'},
   {'200 Park Avenue', 'New York', 'NY', '10166'}, {'1 Infinite Loop', 'Cupertino', 'CA', '95014'},
}
local FIRST = {"Ada", "Alan", "Grace", "Miriam", "Linus", "Barbara", "Edsger", "Margaret", "Dennis", "Frances"}

local function div(a, b) return math.floor(a / b) end

-- Six letters for a number (fixed width: no code is a prefix of another), as LOAD_SQL_REPEATED spells it.
local function code6(n)
   local letters = {}
   for i = 5, 0, -1 do
      table.insert(letters, string.char(97 + div(n, 26 ^ i) % 26))
   end
   return table.concat(letters)
end

function init(args)
   tag = args[1] or tag
   area = args[2] or area
   if args[3] ~= nil and args[3] ~= "-" then account_id = args[3] end
   mode = args[4] or mode
   base = tonumber(args[5] or "0")
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

local function repeated_fields(n, id)
   local family = div(n, 4) % 5 == 0
   local last
   if family then
      last = SURNAMES[1 + div(n, 4) % 16]
   elseif n % 100 == 11 then
      last = "Zq" .. code6(n)
   else
      last = SURNAMES[1 + (n * 7) % 16]
   end
   local phone = string.format("+1%s%07d", area, (family and div(n, 4) or n) % 10000000)
   local line, city, state, zip = nil, "Springfield", "IL", nil
   if n % 50 == 7 then
      local hot = HOT[1 + div(n, 50) % 4]
      line, city, state, zip = hot[1], hot[2], hot[3], hot[4]
   elseif family then
      line, zip = div(n, 4) .. " Family Lane", string.format("%05d", 10000 + div(n, 4) % 89999)
   else
      line, zip = n .. " Main Street", string.format("%05d", 10000 + n % 89999)
   end
   local ssn = string.format("%03d%02d%04d", 1 + div(n, 989901) % 899, 1 + div(n, 9999) % 99, 1 + n % 9999)
   return '{"customer_id":"' .. id .. '"'
      .. ',"name_first":"' .. FIRST[1 + n % 10] .. '","name_last":"' .. last .. '"'
      .. ',"phone_number":"' .. phone .. '"'
      .. ',"address_line_one":"' .. line .. '","address_city":"' .. city .. '","address_state":"' .. state
      .. '","address_zip":"' .. zip .. '","address_country_code":"US"'
      .. ',"ssn":"' .. ssn .. '"'
      .. ',"email":"' .. id .. '@bench.example.com","date_of_birth":"1985-06-20"'
end

function request()
   counter = counter + 1
   local id = tag .. "-" .. thread_id .. "-" .. counter
   local body
   if mode == "repeated" then
      body = repeated_fields(base + thread_id * 1000000 + counter, id)
   else
      local n = thread_id * 10000000 + counter
      body = '{"customer_id":"' .. id .. '"'
         .. ',"name_first":"Pat","name_last":"Bench","name_middle":"Q"'
         .. ',"phone_number":"+1' .. area .. string.format("%07d", 2000000 + n % 8000000) .. '"'
         .. ',"address_line_one":"' .. counter .. ' Bench Street ' .. tag .. '-' .. thread_id .. '"'
         .. ',"address_city":"Springfield","address_state":"IL","address_zip":"62704"'
         .. ',"address_country_code":"US"'
         .. ',"email":"' .. id .. '@bench.example.com","date_of_birth":"1985-06-20"'
   end
   if account_id ~= nil then
      body = body .. ',"assign_to_accounts":[{"account_id":"' .. account_id
         .. '","customer_account_role":"PRIMARY"}]'
   end
   body = body .. "}"
   return wrk.format(nil, "/customers", nil, body)
end
