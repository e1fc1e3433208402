-- Count one summary-change event in the per-minute analytics, once per event id.
-- KEYS[1] the event's seen marker, KEYS[2] the minute's state names, KEYS[3] its values,
-- KEYS[4] its messages (streams/storage/layout.py, AnalyticsKeys).
-- ARGV[1] retention in seconds, ARGV[2] the state name, ARGV[3] the message id, then the
-- values the author took on ("<name>\0<value JSON>").
-- Returns 1 when counted, 0 when the event id was counted before.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('ZINCRBY', KEYS[2], 1, ARGV[2])
redis.call('ZINCRBY', KEYS[4], 1, ARGV[3])
for i = 4, #ARGV do redis.call('ZINCRBY', KEYS[3], 1, ARGV[i]) end
for i = 2, 4 do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
return 1
