-- wrk script for scripts/bench-checkout.sh: gives COUNT customers points, once each.
-- POST /api/v1/wallets/PREFIX-n/earn {"amount":AMOUNT} as the operator, for n = t, t+THREADS,
-- ... up to COUNT on thread t; past its share a thread sends GET /healthz until wrk stops.
--
-- Usage: wrk -tT -cC -dSECSs -s scripts/wrk/earn.lua http://127.0.0.1:PORT/healthz \
--            -- OPERATOR_TOKEN PREFIX COUNT AMOUNT THREADS RUN_ID

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local report = dofile(here .. "report.lua")

setup = report.setup
response = report.response

function done(summary, latency, requests)
   report.done("earn", summary, latency)
end

local token, prefix, count, body, threads, run_id
local n
local healthz

function init(args)
   token, prefix = args[1], args[2]
   count, threads = tonumber(args[3]), tonumber(args[5])
   body = '{"amount":' .. args[4] .. ',"description":"bench"}'
   run_id = args[6] or tostring(os.time())
   n = tid
   healthz = wrk.format("GET", "/healthz")
end

function request()
   if n > count then
      return healthz
   end
   local user = prefix .. "-" .. n
   n = n + threads
   sent = sent + 1
   return "POST /api/v1/wallets/" .. user .. "/earn HTTP/1.1\r\n"
      .. "Host: " .. wrk.host .. ":" .. wrk.port .. "\r\n"
      .. "Content-Type: application/json\r\n"
      .. "Content-Length: " .. #body .. "\r\n"
      .. "Authorization: Bearer " .. token .. "\r\n"
      .. "Idempotency-Key: " .. run_id .. "-earn-" .. user .. "\r\n\r\n" .. body
end
