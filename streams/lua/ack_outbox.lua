-- Drop the first ARGV[2] outbox entries once Kafka acknowledged them; only the token holder may.
-- KEYS[1] fence hash, KEYS[2] outbox list; ARGV[1] token, ARGV[2] count.
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return redis.error_reply('FENCED')
end
redis.call('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)
return redis.call('LLEN', KEYS[2])
