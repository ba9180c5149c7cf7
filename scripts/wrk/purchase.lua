-- wrk script: the time-sale flagship. Every request is POST /api/v1/time-sales/{id}/purchase
-- for one unit, each by a DIFFERENT customer (the sale keeps its per-user limit of 1), with an
-- Idempotency-Key unique across threads, connections and runs.
--
-- Usage (the URL's path is the one requested):
--   wrk -t2 -c64 -d15s --latency -s scripts/wrk/purchase.lua \
--       http://127.0.0.1:18080/api/v1/time-sales/ID/purchase -- TOKENS_FILE RUN_ID THREADS [BODY]
-- TOKENS_FILE: one customer token per line, each of a distinct user (`surge token --count N`);
-- thread t of THREADS uses lines t, t+THREADS, t+2*THREADS, ... so no user buys twice while the
-- file lasts (past its end a thread starts over, and those requests get 422: make it long
-- enough). BODY (default {"quantity":1}) is the JSON body of every request: the same script
-- drives the coupon-issue storm (`{}` to /coupon-policies/ID/issue) and, with one token repeated
-- THREADS times, spends on one hot wallet (`{"amount":1}` to /wallets/me/use).
-- done() prints one WRK_RESULT line (see report.lua).

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local report = dofile(here .. "report.lua")

setup = report.setup
response = report.response

function done(summary, latency, requests)
   report.done("purchase", summary, latency)
end

local tokens = {}
local counter = 0
-- The fixed parts of every request (report.keyed_post): request() is one concatenation.
local head, mid, tail

function init(args)
   local path = args[1] or os.getenv("TOKENS_FILE")
   assert(path, "purchase.lua: pass the tokens file as the first script argument")
   assert(tid, "purchase.lua: setup() did not give this thread an id")
   local threads = tonumber(args[3] or "1")
   local line_no = 0
   for line in io.lines(path) do
      line_no = line_no + 1
      if (line_no - 1) % threads == tid - 1 then
         local token = line:match("^%s*(%S+)%s*$")
         if token then
            table.insert(tokens, token)
         end
      end
   end
   assert(#tokens > 0, "purchase.lua: no tokens for this thread in " .. path)
   local run_id = args[2] or tostring(os.time())
   local body = args[4] or '{"quantity":1}'
   head, mid, tail = report.keyed_post(body, run_id .. "-p" .. tid .. "-")
   counter = 0
end

function request()
   counter = counter + 1
   sent = counter
   return head .. tokens[(counter - 1) % #tokens + 1] .. mid .. counter .. tail
end
