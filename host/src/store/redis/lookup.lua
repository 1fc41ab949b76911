-- A hit in one round trip on a single Redis (see `scripts.rs`): an entry's value and the current
-- tokens of the tags recorded in its header (`entry.rs`: n_tags at byte 43, then
-- `tag:[u8;16] token_len:u8 token` each; Lua counts bytes from 1). A value it cannot read is
-- answered alone, for the host to decode (and delete if corrupt).
-- KEYS: the entry. ARGV: the token key prefix (`<prefix>tag:`). Answer: {value, token...}, or nil.
local v = redis.call('GET', KEYS[1])
if not v then return false end
if #v < 45 or string.sub(v, 1, 4) ~= 'LRD2' then return {v} end
local n = string.byte(v, 44) + 256 * string.byte(v, 45)
if n == 0 then return {v} end
local pos, keys, hex = 46, {}, string.rep('%02x', 16)
for i = 1, n do
  if pos + 16 > #v then return {v} end
  keys[i] = ARGV[1] .. string.format(hex, string.byte(v, pos, pos + 15))
  pos = pos + 17 + string.byte(v, pos + 16)
end
local out = redis.call('MGET', unpack(keys))
table.insert(out, 1, v)
return out
