-- Read what a round needs that the worker's cache does not hold, in one call.
-- KEYS: the parts' meta hashes (np), the parts' value hashes (nv), the messages' dedupe
-- lists (ni). ARGV[1..4] np, nv, ni, and the most fields a value hash may have to be read
-- whole; ARGV[5..4+nv] how many fields each value hash is asked for; then those fields, hash
-- after hash.
-- Returns {metas, values, ids, whole}: each meta as HGETALL's flat list; each value hash
-- whole as HGETALL's flat list when it has at most that many fields (whole[i] = 1: every
-- field it lacks is absent), else HMGET's answer to the fields asked (false for an absent
-- one, whole[i] = 0); each dedupe list whole, oldest first.
-- v1.1, optional (a caller that reads none of it stops the ARGV after the fields): then
-- ARGV nh, nf, and nf fields; KEYS then hashes read whole (nh), hashes read one field each
-- (nf). The reply then adds {hashes, fields}: HGETALL's flat lists, HGET's answers (false
-- when absent).
local np, nv, ni, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local metas, values, ids, whole = {}, {}, {}, {}
for i = 1, np do
  metas[i] = redis.call('HGETALL', KEYS[i])
end
local at = 5 + nv
for i = 1, nv do
  local key, n = KEYS[np + i], tonumber(ARGV[4 + i])
  if redis.call('HLEN', key) <= most then
    values[i], whole[i] = redis.call('HGETALL', key), 1
  else
    local got = {}
    -- unpack() is bounded by Lua's C stack: ask in slices.
    for first = at, at + n - 1, 4000 do
      local last = math.min(first + 3999, at + n - 1)
      local slice = redis.call('HMGET', key, unpack(ARGV, first, last))
      for j = 1, #slice do
        got[#got + 1] = slice[j]
      end
    end
    values[i], whole[i] = got, 0
  end
  at = at + n
end
for i = 1, ni do
  ids[i] = redis.call('LRANGE', KEYS[np + nv + i], 0, -1)
end
if ARGV[at] == nil then
  return {metas, values, ids, whole}
end
local nh, nf = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
local k = np + nv + ni
local hashes, fields = {}, {}
for i = 1, nh do
  hashes[i] = redis.call('HGETALL', KEYS[k + i])
end
k = k + nh
for i = 1, nf do
  fields[i] = redis.call('HGET', KEYS[k + i], ARGV[at + 1 + i])
end
return {metas, values, ids, whole, hashes, fields}
