-- wrk script: the hot-SKU purchase. Every request is POST /api/v1/orders for one unit of one SKU,
-- as one of many customers (bearer tokens rotated), with an Idempotency-Key that is unique across
-- threads, connections and runs, so every request is a real new order and never a replay.
--
-- Usage (the URL's path is the one requested):
--   wrk -t2 -c64 -d15s --latency -s scripts/wrk/orders.lua \
--       http://127.0.0.1:18080/api/v1/orders -- TOKENS_FILE RUN_ID [SKU]
-- TOKENS_FILE: one customer access token per line. RUN_ID: a string unique to this run (keys
-- stay unique even against a data dir that already holds keys of an earlier run). SKU: HOT-1.
-- done() prints one WRK_RESULT line (see report.lua).

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local report = dofile(here .. "report.lua")

setup = report.setup
response = report.response

function done(summary, latency, requests)
   report.done("orders", summary, latency)
end

-- Thread state below. `tid` is set by setup() in the main state before init() runs here.
local tokens = {}
local counter = 0
-- The fixed parts of every request (report.keyed_post): request() is one concatenation.
local head, mid, tail

function init(args)
   local path = args[1] or os.getenv("TOKENS_FILE")
   assert(path, "orders.lua: pass the tokens file as the first script argument")
   for line in io.lines(path) do
      local token = line:match("^%s*(%S+)%s*$")
      if token then
         table.insert(tokens, token)
      end
   end
   assert(#tokens > 0, "orders.lua: no tokens in " .. path)
   assert(tid, "orders.lua: setup() did not give this thread an id")
   local run_id = args[2] or tostring(os.time())
   local sku = args[3] or "HOT-1"
   local body = '{"items":[{"sku":"' .. sku .. '","quantity":1}]}'
   head, mid, tail = report.keyed_post(body, run_id .. "-" .. tid .. "-")
   counter = 0
end

function request()
   counter = counter + 1
   sent = counter
   -- Threads start at different points of the token list so they do not walk it in lockstep.
   local token = tokens[(tid * 7919 + counter) % #tokens + 1]
   return head .. token .. mid .. counter .. tail
end
