-- wrk script for scripts/bench-tickets.sh: POST one body to one URL as many distinct users, until
-- a quota is sent or the resource runs out, then stop.
--
-- Usage: wrk -tT -cC -d<bound>s --latency -s scripts/wrk/until.lua URL \
--            -- TOKENS_FILE DONE_DIR THREADS QUOTA BODY [STOP_STATUS]
-- Thread t of THREADS uses tokens on lines t, t+THREADS, ... (round robin past the end) and sends
-- at most QUOTA/THREADS requests (0 = no quota). A thread that has seen 50 answers STOP_STATUS
-- in a row (409: sold out) stops sending too. A thread that stopped sending fills its
-- connections with GET /healthz every 20 ms until all its POSTs are answered, then writes
-- DONE_DIR/thread-<t> and stops; the caller SIGINTs wrk once every thread is done, so wrk's
-- duration is the time it took. done() prints one WRK_RESULT line (see report.lua); its latency
-- figures include the /healthz fillers, which are few and fast.

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local report = dofile(here .. "report.lua")

setup = report.setup

function done(summary, latency, requests)
   report.done("until", summary, latency)
end

local tokens = {}
local done_dir, quota, unlimited, body, stop_status
local counter = 0
local answered = 0
local refused_in_row = 0
local stopped_sending = false
local finished = false

function init(args)
   assert(tid, "until.lua: setup() did not give this thread an id")
   local path = assert(args[1], "until.lua: pass TOKENS_FILE")
   done_dir = assert(args[2], "until.lua: pass DONE_DIR")
   local threads = assert(tonumber(args[3]), "until.lua: pass THREADS")
   local total = assert(tonumber(args[4]), "until.lua: pass QUOTA")
   body = assert(args[5], "until.lua: pass BODY")
   stop_status = tonumber(args[6] or "409")
   unlimited = total == 0
   quota = math.floor(total / threads)
   if total > 0 and tid <= total % threads then
      quota = quota + 1
   end
   local line_no = 0
   for line in io.lines(path) do
      line_no = line_no + 1
      if (line_no - 1) % threads == tid - 1 then
         table.insert(tokens, line:match("^%s*(%S+)%s*$"))
      end
   end
   assert(#tokens > 0, "until.lua: no tokens for this thread")
   -- wrk calls request() once in the first thread right after init() and never sends it.
   if tid == 1 then
      counter = -1
   end
end

function request()
   if not stopped_sending and (unlimited or counter < quota) then
      counter = counter + 1
      sent = counter
      local token = tokens[(math.max(counter, 1) - 1) % #tokens + 1]
      local headers = {
         ["Content-Type"] = "application/json",
         ["Authorization"] = "Bearer " .. token,
      }
      return wrk.format("POST", nil, headers, body)
   end
   stopped_sending = true
   return wrk.format("GET", "/healthz")
end

function delay()
   if stopped_sending then
      return 20
   end
   return 0
end

local function finish_when_answered()
   if stopped_sending and answered >= counter and not finished then
      finished = true
      local f = assert(io.open(done_dir .. "/thread-" .. tid, "w"))
      f:write(answered, "\n")
      f:close()
      wrk.thread:stop()
   end
end

function response(status, headers, resp_body)
   if status == 200 and stopped_sending then
      finish_when_answered() -- a /healthz filler
      return
   end
   report.response(status, headers, resp_body)
   answered = answered + 1
   if status == stop_status then
      refused_in_row = refused_in_row + 1
      if refused_in_row >= 50 then
         stopped_sending = true
      end
   else
      refused_in_row = 0
   end
   finish_when_answered()
end
