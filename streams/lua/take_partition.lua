-- Take an input partition: a new token fences every earlier holder.
-- KEYS[1] the fence hash, KEYS[2] the outbox list.
-- The token is the larger of the stored one + 1 and the server's clock in microseconds, so that
-- it still grows after a failover to a replica that lost the last take: a token handed out
-- before is never handed out again.
-- Returns {token, last applied offset (-1 before the first), the outbox entries left}.
local now = redis.call('TIME')
local stored = tonumber(redis.call('HGET', KEYS[1], 'token') or '0')
local token = math.max(stored + 1, tonumber(now[1]) * 1000000 + tonumber(now[2]))
redis.call('HSET', KEYS[1], 'token', string.format('%d', token))
local offset = redis.call('HGET', KEYS[1], 'offset') or '-1'
return {string.format('%d', token), offset, redis.call('LRANGE', KEYS[2], 0, -1)}
