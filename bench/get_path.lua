-- GET of one fixed path (the path and query of the URL wrk is given), e.g. a page of GET /customers.
--   wrk ... -s bench/get_path.lua 'http://127.0.0.1:PORT/customers?limit=12&starting_after=...'
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local lib = dofile(here .. "lib.lua")
lib.install()
