-- wrk script for scripts/bench-memory.sh: fill the journal with orders on a few hot SKUs.
--
-- Usage: wrk -tT -cC -d<bound>s -s scripts/memory/fill-orders.lua http://127.0.0.1:PORT/ \
--            -- DONE_DIR TOKENS_FILE HOT_SKUS ORDERS THREADS
-- Every request is POST /api/v1/orders for one unit of one of the SKUs HOT-1..HOT-<HOT_SKUS>
-- (rotated), as one of the customers in TOKENS_FILE (one access token per line, rotated). No
-- Idempotency-Key: every request is a new order (2 journal events: the reservation and the
-- order's birth). A thread stops once ORDERS/THREADS of its orders were answered 201; requests
-- still in flight then may add a few more. wrk runs for its whole -d even when every thread has
-- stopped, so a stopping thread writes DONE_DIR/thread-<t> ("created failed"); the caller waits
-- for one file per thread, then sends wrk SIGINT.
-- done() prints one line: MEM_RESULT created=.. failed=.. statuses=201:n,.. duration_s=..

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

-- Thread state. Globals, so that done() can read them with thread:get().
created = 0
failed = 0
codes_seen = ""

local tokens = {}
local bodies = {}
local quota, done_dir
local counter = 0
local seen = {}
local finished = false

function init(args)
   assert(tid, "fill-orders.lua: setup() did not give this thread an id")
   done_dir = assert(args[1], "fill-orders.lua: pass DONE_DIR")
   local path = assert(args[2], "fill-orders.lua: pass the tokens file")
   for line in io.lines(path) do
      local token = line:match("^%s*(%S+)%s*$")
      if token then
         table.insert(tokens, token)
      end
   end
   assert(#tokens > 0, "fill-orders.lua: no tokens in " .. path)
   local skus = assert(tonumber(args[3]), "fill-orders.lua: pass HOT_SKUS")
   for i = 1, skus do
      bodies[i] = '{"items":[{"sku":"HOT-' .. i .. '","quantity":1}]}'
   end
   local total = assert(tonumber(args[4]), "fill-orders.lua: pass ORDERS")
   local nthreads = assert(tonumber(args[5]), "fill-orders.lua: pass THREADS")
   quota = math.max(1, math.ceil(total / nthreads))
end

function request()
   counter = counter + 1
   local headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. tokens[(tid * 7919 + counter) % #tokens + 1],
   }
   return wrk.format("POST", "/api/v1/orders", headers, bodies[(tid * 31 + counter) % #bodies + 1])
end

function response(status, headers, body)
   if status == 201 then
      created = created + 1
   else
      failed = failed + 1
      local name = "status_" .. status
      if not seen[status] then
         seen[status] = true
         codes_seen = codes_seen .. status .. ","
      end
      _G[name] = (_G[name] or 0) + 1
   end
   if created >= quota and not finished then
      finished = true
      local f = assert(io.open(done_dir .. "/thread-" .. tid, "w"))
      f:write(created, " ", failed, "\n")
      f:close()
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local c, f, per = 0, 0, {}
   for _, t in ipairs(threads) do
      c = c + (tonumber(t:get("created")) or 0)
      f = f + (tonumber(t:get("failed")) or 0)
      for code in string.gmatch(t:get("codes_seen") or "", "(%d+),") do
         per[code] = (per[code] or 0) + (tonumber(t:get("status_" .. code)) or 0)
      end
   end
   local parts = { "201:" .. c }
   for code, n in pairs(per) do
      table.insert(parts, code .. ":" .. n)
   end
   local e = summary.errors
   io.write(string.format(
      "MEM_RESULT created=%d failed=%d statuses=%s duration_s=%.3f requests=%d"
         .. " err_connect=%d err_read=%d err_write=%d err_timeout=%d\n",
      c, f, table.concat(parts, ","), summary.duration / 1e6, summary.requests,
      e.connect, e.read, e.write, e.timeout))
end
