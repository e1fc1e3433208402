-- Persist one round of engine decisions, for every input partition in it, atomically.
-- KEYS[2i-1], KEYS[2i] the fence hash and outbox list of the round's i-th partition (i = 1..p),
-- KEYS[2p+1..] the round's state keys.
-- ARGV[1] p; then five per partition: the caller's assignment token, the first and last
-- offset of its records, how many entries at the head of its outbox Kafka acknowledged
-- (dropped first), and its new outbox entry ('' for none); then the writes as one JSON array
-- of groups of four: op, key index, field, value (strings but the key index).
--   H: HSET   D: HDEL   I: HINCRBY, dropping the field at 0 or below
--   L: RPUSH the field   T: keep the newest `value` items of a list
-- Every fence is checked before anything is written: one stale partition refuses the round,
-- naming its position (1-based) so that the caller can drop it and try the rest again.
local p = tonumber(ARGV[1])
for i = 1, p do
  local fence, at = KEYS[2 * i - 1], 2 + 5 * (i - 1)
  local token = redis.call('HGET', fence, 'token')
  if token ~= ARGV[at] then
    return redis.error_reply('FENCED ' .. i .. ' partition token is ' .. tostring(token) .. ', caller has ' .. ARGV[at])
  end
  local applied = tonumber(redis.call('HGET', fence, 'offset') or '-1')
  if tonumber(ARGV[at + 1]) <= applied then
    return redis.error_reply('REAPPLY ' .. i .. ' offset ' .. ARGV[at + 1] .. ' was applied already (fence ' .. applied .. ')')
  end
end
for i = 1, p do
  local at = 2 + 5 * (i - 1)
  local acked = tonumber(ARGV[at + 3])
  if acked > 0 then
    redis.call('LTRIM', KEYS[2 * i], acked, -1)
  end
  if ARGV[at + 4] ~= '' then
    redis.call('RPUSH', KEYS[2 * i], ARGV[at + 4])
  end
  redis.call('HSET', KEYS[2 * i - 1], 'offset', ARGV[at + 2])
end
local ops = cjson.decode(ARGV[2 + 5 * p])
local i = 1
local last = #ops
while i <= last do
  local op, key, field, value = ops[i], KEYS[ops[i + 1]], ops[i + 2], ops[i + 3]
  if op == 'H' or op == 'L' then
    -- Consecutive writes of one kind to one key go in one call (a response's changes to a
    -- part, a part's meta fields): each call costs Redis more than the field it writes.
    local k, j = ops[i + 1], i + 4
    local args = op == 'H' and {field, value} or {field}
    -- unpack() is bounded by Lua's C stack: at most 4000 arguments a call.
    while j <= last and ops[j] == op and ops[j + 1] == k and #args < 3999 do
      args[#args + 1] = ops[j + 2]
      if op == 'H' then
        args[#args + 1] = ops[j + 3]
      end
      j = j + 4
    end
    redis.call(op == 'H' and 'HSET' or 'RPUSH', key, unpack(args))
    i = j - 4
  elseif op == 'D' then
    redis.call('HDEL', key, field)
  elseif op == 'I' then
    if redis.call('HINCRBY', key, field, value) <= 0 then
      redis.call('HDEL', key, field)
    end
  elseif op == 'T' then
    redis.call('LTRIM', key, -tonumber(value), -1)
  else
    return redis.error_reply('unknown op ' .. op)
  end
  i = i + 4
end
return p
