-- wrk script: full checkouts on one hot time sale. A checkout is two requests by one customer:
-- POST /api/v1/time-sales/{id}/purchase (201, the order RESERVED), then
-- POST /api/v1/orders/{order}/pay (200, the order CONFIRMED), paid with points or a card.
--
-- Usage (the URL's path is the purchase path):
--   wrk -t2 -c64 -d15s --latency -s scripts/wrk/checkout.lua \
--       http://127.0.0.1:18080/api/v1/time-sales/ID/purchase -- TOKENS_FILE RUN_ID THREADS PAY_BODY USER_PREFIX
-- TOKENS_FILE: one token per line, line n of user USER_PREFIX-n (`surge token --count N`); thread
-- t of THREADS takes lines t, t+THREADS, ... (each customer buys once: make the file long enough).
-- PAY_BODY: the pay request's JSON body, e.g. {"points":9900} or {"card_token":"tok_visa"}.
--
-- wrk gives response() no connection, so the script pairs requests by content: a purchase's
-- answer names its order and customer; the order goes on this thread's queue, and request()
-- sends a queued pay before a new purchase. Latency figures cover both kinds of request.
-- done() prints the WRK_RESULT line (report.lua) and a CHECKOUT_RESULT line:
--   CHECKOUT_RESULT purchases=<201s> confirmed=<pays answered CONFIRMED> other_pays=<pays not>

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local report = dofile(here .. "report.lua")

setup = report.setup

purchases = 0
confirmed = 0
other_pays = 0

local tokens = {}
local token_of = {}
local queue = {}
local counter = 0
local head, mid, tail
local pay_body, host_line

function init(args)
   local path = args[1]
   assert(path, "checkout.lua: pass the tokens file as the first script argument")
   local threads = tonumber(args[3] or "1")
   pay_body = args[4] or '{"points":9900}'
   local prefix = args[5] or "buyer"
   local line_no = 0
   for line in io.lines(path) do
      line_no = line_no + 1
      if (line_no - 1) % threads == tid - 1 then
         local token = line:match("^%s*(%S+)%s*$")
         if token then
            table.insert(tokens, token)
            token_of[prefix .. "-" .. line_no] = token
         end
      end
   end
   assert(#tokens > 0, "checkout.lua: no tokens for this thread in " .. path)
   local run_id = args[2] or tostring(os.time())
   head, mid, tail = report.keyed_post('{"quantity":1}', run_id .. "-c" .. tid .. "-")
   host_line = "Host: " .. wrk.host .. ":" .. wrk.port .. "\r\n"
end

local function pay_request(order, token)
   return "POST /api/v1/orders/" .. order .. "/pay?wait_secs=10 HTTP/1.1\r\n" .. host_line
      .. "Content-Type: application/json\r\n"
      .. "Content-Length: " .. #pay_body .. "\r\n"
      .. "Authorization: Bearer " .. token .. "\r\n\r\n" .. pay_body
end

function request()
   sent = sent + 1
   local next_pay = table.remove(queue)
   if next_pay then
      return pay_request(next_pay[1], next_pay[2])
   end
   counter = counter + 1
   return head .. tokens[(counter - 1) % #tokens + 1] .. mid .. counter .. tail
end

function response(status, headers, body)
   report.response(status, headers, body)
   local status_field = body:match('"status":"(%u[%u_]*)"')
   if status == 201 and status_field == "RESERVED" then
      purchases = purchases + 1
      local order = body:match('"id":"([%x%-]+)"')
      local user = body:match('"user_id":"([^"]+)"')
      local token = user and token_of[user]
      if order and token then
         table.insert(queue, { order, token })
      end
   elseif status_field == "CONFIRMED" then
      confirmed = confirmed + 1
   elseif body:find('"points_used"', 1, true) then
      other_pays = other_pays + 1
   end
end

function done(summary, latency, requests)
   report.done("checkout", summary, latency)
   local p, c, o = 0, 0, 0
   for _, thread in ipairs(report.threads()) do
      p = p + (thread:get("purchases") or 0)
      c = c + (thread:get("confirmed") or 0)
      o = o + (thread:get("other_pays") or 0)
   end
   io.write(string.format("CHECKOUT_RESULT purchases=%d confirmed=%d other_pays=%d\n", p, c, o))
end
