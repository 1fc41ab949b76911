-- A store in one round trip when the host knows its tags' tokens (see `scripts.rs`): reads (and
-- creates) each tag's token and counts the entry, as the store pipeline does (`fill.rs`), then
-- writes the entry only if every token is the one the entry records; and, for a fill that holds
-- a fleet lease, ends the lease as the lease script's `finish` does (`lease.lua`: announced only
-- if waited for).
-- KEYS: the entry, then each tag's token and counter, then the fill's lease if it has one.
-- ARGV: the value, its life (s), the tokens' life (s), then per tag the token the value records
-- and a fresh one (set if missing), then with a lease its holder, the outcome's life (ms) and
-- the fill news channel.
-- Answer: {'1' if written else '0', each tag's token before (nil where there was none)...}.
local life, token_life = ARGV[2], ARGV[3]
local tags = math.floor((#KEYS - 1) / 2)
local out, same = {'0'}, true
for i = 1, tags do
  local token, counter = KEYS[2 * i], KEYS[2 * i + 1]
  local recorded, fresh = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  local before = redis.call('SET', token, fresh, 'NX', 'GET', 'EX', token_life)
  redis.call('EXPIRE', token, token_life, 'GT')
  redis.call('INCR', counter)
  redis.call('EXPIRE', counter, token_life, 'NX')
  redis.call('EXPIRE', counter, token_life, 'GT')
  if (before or fresh) ~= recorded then same = false end
  out[i + 1] = before
end
if same then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', life)
  out[1] = '1'
  if #KEYS > 2 * tags + 1 then
    local lease, at = KEYS[#KEYS], 4 + 2 * tags
    local v, waited = redis.call('GET', lease), ARGV[at] .. '+'
    if v == ARGV[at] or v == waited then
      redis.call('SET', lease, 'done:stored', 'PX', ARGV[at + 1])
      if v == waited then redis.call('PUBLISH', ARGV[at + 2], lease) end
    end
  end
end
return out
