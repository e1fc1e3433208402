-- Persist one batch of engine decisions for one input partition, atomically.
-- KEYS[1] the partition's fence hash, KEYS[2] its outbox list, KEYS[3..] the batch's state keys.
-- ARGV[1] the caller's assignment token, ARGV[2] first and ARGV[3] last offset of the batch,
-- ARGV[4] how many entries at the head of the outbox Kafka acknowledged (dropped first),
-- ARGV[5] n, ARGV[6 .. 5+n] new outbox entries, ARGV[6+n] the writes as one JSON array of
-- groups of four: op, key index, field, value (strings but the key index).
--   H: HSET   D: HDEL   I: HINCRBY, dropping the field at 0 or below
--   Z: ZADD (value = score, field = member)   T: keep the newest `value` members of a zset
local fence = KEYS[1]
local token = redis.call('HGET', fence, 'token')
if token ~= ARGV[1] then
  return redis.error_reply('FENCED partition token is ' .. tostring(token) .. ', caller has ' .. ARGV[1])
end
local applied = tonumber(redis.call('HGET', fence, 'offset') or '-1')
if tonumber(ARGV[2]) <= applied then
  return redis.error_reply('REAPPLY offset ' .. ARGV[2] .. ' was applied already (fence ' .. applied .. ')')
end
local acked = tonumber(ARGV[4])
if acked > 0 then
  redis.call('LTRIM', KEYS[2], acked, -1)
end
local n = tonumber(ARGV[5])
local ops = cjson.decode(ARGV[6 + n])
local i = 1
local last = #ops
while i <= last do
  local op, key, field, value = ops[i], KEYS[ops[i + 1]], ops[i + 2], ops[i + 3]
  if op == 'H' then
    redis.call('HSET', key, field, value)
  elseif op == 'D' then
    redis.call('HDEL', key, field)
  elseif op == 'I' then
    if redis.call('HINCRBY', key, field, value) <= 0 then
      redis.call('HDEL', key, field)
    end
  elseif op == 'Z' then
    redis.call('ZADD', key, value, field)
  elseif op == 'T' then
    redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(value) + 1))
  else
    return redis.error_reply('unknown op ' .. op)
  end
  i = i + 4
end
-- In chunks: Lua's unpack has a bounded stack.
local from = 6
while from <= 5 + n do
  local to = math.min(from + 999, 5 + n)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, from, to))
  from = to + 1
end
redis.call('HSET', fence, 'offset', ARGV[3])
return n
