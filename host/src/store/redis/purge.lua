-- Replaces a tag's token atomically and takes the count of entries stored with the tag since its
-- previous purge (see `scripts.rs` for what this guarantees, `tags.rs` for the token's form).
-- KEYS: the tag's token, its counter. ARGV: now_us, soft ('1'/'0'), nonce, marker TTL, a fresh
-- lineage. Answer: the count.
local hard, lineage = ARGV[1], ARGV[5]
local old = redis.call('GET', KEYS[1])
if old then
  local h, l = string.match(old, '^(%d+)%.%d+%.%x+%.(%x+)$')
  if l then
    lineage = l
    if ARGV[2] == '1' then hard = h end
  end
end
redis.call('SET', KEYS[1], hard .. '.' .. ARGV[1] .. '.' .. ARGV[3] .. '.' .. lineage, 'EX', ARGV[4])
return tonumber(redis.call('GETDEL', KEYS[2]) or '0')
