-- A fill lease (see `lease.rs`): one script for its three steps, so each is one atomic read and
-- write of the lease key. A held lease's value is its holder's id, with '+' appended once a
-- claim found it held: someone waits for the fill, so its end is announced (an end nobody waits
-- for is not, which spares every instance a message per miss).
-- KEYS: the lease. ARGV[1]: 'claim', 'renew' or 'finish'; ARGV[2]: the holder's id.
--   claim:  ARGV[3] lease ms, ARGV[4] what may be taken over besides a free lease: 'new' (the
--           outcome of an unstorable fill), 'wait' (nothing), 'force' (any outcome). Answers 1
--           if taken, else 0 if held (and marks it waited for), 2 if the last fill stored the
--           entry, 3 if it did not.
--   renew:  ARGV[3] lease ms. Extends the lease if the holder still holds it; 1 or 0.
--   finish: ARGV[3] the outcome ('done:stored' or 'done:unstorable'), ARGV[4] its life in ms,
--           ARGV[5] the fill news channel. Replaces the holder's lease by the outcome and, if it
--           was waited for, publishes the lease's name on the channel; 1, or 0 if the lease was
--           lost (then its new holder will).
local v = redis.call('GET', KEYS[1])
local op = ARGV[1]
if op == 'claim' then
  local mode = ARGV[4]
  if v == 'done:stored' and mode ~= 'force' then return 2 end
  if v == 'done:unstorable' and mode == 'wait' then return 3 end
  if v and string.sub(v, 1, 5) ~= 'done:' then
    if string.sub(v, -1) ~= '+' then redis.call('SET', KEYS[1], v .. '+', 'KEEPTTL') end
    return 0
  end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
local waited = ARGV[2] .. '+'
if v ~= ARGV[2] and v ~= waited then return 0 end
if op == 'renew' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
if v == waited then redis.call('PUBLISH', ARGV[5], KEYS[1]) end
return 1
