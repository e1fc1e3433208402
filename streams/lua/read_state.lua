-- Read what a round needs that the worker's cache does not hold, in one call.
-- KEYS: the parts' meta hashes (np), the parts' value hashes (nv), the messages' dedupe
-- lists (ni). ARGV[1..3] np, nv, ni; ARGV[4..3+nv] how many fields each value hash is asked
-- for; then those fields, hash after hash.
-- Returns {metas, values, ids}: each meta as HGETALL's flat list, each value hash's HMGET
-- (false for an absent field), each dedupe list whole, oldest first.
local np, nv, ni = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local metas, values, ids = {}, {}, {}
for i = 1, np do
  metas[i] = redis.call('HGETALL', KEYS[i])
end
local at = 4 + nv
for i = 1, nv do
  local n, got = tonumber(ARGV[3 + i]), {}
  -- unpack() is bounded by Lua's C stack: ask in slices.
  for first = at, at + n - 1, 4000 do
    local last = math.min(first + 3999, at + n - 1)
    local slice = redis.call('HMGET', KEYS[np + i], unpack(ARGV, first, last))
    for j = 1, #slice do
      got[#got + 1] = slice[j]
    end
  end
  values[i] = got
  at = at + n
end
for i = 1, ni do
  ids[i] = redis.call('LRANGE', KEYS[np + nv + i], 0, -1)
end
return {metas, values, ids}
