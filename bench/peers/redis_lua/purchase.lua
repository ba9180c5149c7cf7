-- One purchase, atomic because Redis runs a script to its end before the next command.
-- KEYS[1]: the remaining count; KEYS[2]: the order stream; ARGV[1]: the buyer's id.
-- Returns 1 when a unit was taken, 0 when none was left.
local remaining = tonumber(redis.call('GET', KEYS[1]) or '0')
if remaining <= 0 then return 0 end
redis.call('DECR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000000', '*', 'user', ARGV[1])
return 1
