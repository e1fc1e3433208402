-- Take an input partition: a new token fences every earlier holder.
-- KEYS[1] the fence hash, KEYS[2] the outbox list.
-- Returns {token, last applied offset (-1 before the first), the outbox entries left}.
local token = redis.call('HINCRBY', KEYS[1], 'token', 1)
local offset = redis.call('HGET', KEYS[1], 'offset') or '-1'
return {token, offset, redis.call('LRANGE', KEYS[2], 0, -1)}
