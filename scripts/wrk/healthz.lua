-- wrk script: GET on the URL given (the bench uses /healthz), the ceiling of the HTTP stack.
-- It counts responses by status in response(), like orders.lua, so the client does the same
-- per-response work in both runs and the orders/healthz ratio compares server-side cost.
-- Usage: wrk -t2 -c64 -d15s --latency -s scripts/wrk/healthz.lua http://127.0.0.1:18080/healthz
-- done() prints one WRK_RESULT line (see report.lua).

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local report = dofile(here .. "report.lua")

setup = report.setup
response = report.response

function done(summary, latency, requests)
   report.done("healthz", summary, latency)
end
