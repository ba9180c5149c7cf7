-- wrk script for scripts/bench-memory.sh: create exactly TOTAL stock items (or wallets), then stop.
--
-- Usage: wrk -tT -cC -d<bound>s -s scripts/memory/create-items.lua http://127.0.0.1:PORT/ \
--            -- DONE_DIR OPERATOR_TOKEN TOTAL THREADS [PREFIX [KIND]]
-- Thread t (1-based, given by setup()) POSTs /api/v1/stock-items with sku PREFIX-<t>-<n> for
-- n = 1..its share of TOTAL, so SKUs are unique across threads and connections. With KIND
-- `wallet` it instead POSTs /api/v1/wallets/PREFIX-<t>-<n>/earn (10 points): a wallet is
-- activated on demand, so each request brings one new wallet entity to life. Once a thread
-- has sent its share, its connections only GET /healthz (which creates nothing; one every 20 ms)
-- until every POST of the thread has been answered, and then the thread stops. So at most TOTAL
-- items are created, and exactly TOTAL when every POST answers 201.
-- wrk itself runs for its whole -d even when every thread has stopped, so a stopping thread
-- writes DONE_DIR/thread-<t> ("created failed"); the caller waits for one file per thread and
-- then sends wrk SIGINT, which makes it print its summary and call done() at once.
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

local token, quota, prefix, kind, done_dir
local sent = 0
local answered = 0
local seen = {}
local post_headers
local finished = false

function init(args)
   assert(tid, "create-items.lua: setup() did not give this thread an id")
   done_dir = assert(args[1], "create-items.lua: pass DONE_DIR")
   token = assert(args[2], "create-items.lua: pass the operator token")
   local total = assert(tonumber(args[3]), "create-items.lua: pass TOTAL")
   local nthreads = assert(tonumber(args[4]), "create-items.lua: pass THREADS")
   prefix = args[5] or "M"
   kind = args[6] or "stock"
   assert(kind == "stock" or kind == "wallet", "create-items.lua: KIND is stock or wallet")
   -- The script's caller makes TOTAL >= THREADS, so every thread has at least one item.
   quota = math.floor(total / nthreads)
   if tid <= total % nthreads then
      quota = quota + 1
   end
   -- wrk 4 calls request() once in the first thread's state right after init(), to check the
   -- request it builds, and never sends that one. Counting it as sent would leave the thread one
   -- item short and waiting for an answer that never comes, so the first thread starts one
   -- lower. (A wrk that does not make that call creates one item more; the caller counts what
   -- was really created from /admin/overview either way.)
   if tid == 1 then
      sent = -1
   end
   post_headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. token,
   }
end

function request()
   if sent < quota then
      sent = sent + 1
      if kind == "wallet" then
         local path = string.format("/api/v1/wallets/%s-%d-%d/earn", prefix, tid, sent)
         return wrk.format("POST", path, post_headers, '{"amount":10}')
      end
      local body = string.format('{"sku":"%s-%d-%d","name":"m","on_hand":100}', prefix, tid, sent)
      return wrk.format("POST", "/api/v1/stock-items", post_headers, body)
   end
   return wrk.format("GET", "/healthz")
end

-- A thread that has sent its share waits for the last answers; its filler GETs are spaced out
-- so they do not take CPU from the threads still creating.
function delay()
   if sent >= quota then
      return 20
   end
   return 0
end

function response(status, headers, body)
   -- /healthz answers 200; a creation (or an earn) 201 or an error, never 200.
   if status == 200 then
      return
   end
   answered = answered + 1
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
   if answered >= quota and not finished then
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
