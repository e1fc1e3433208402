-- Read an app's records in one consistent step: by ids, by associations (all of them), or all.
-- KEYS[1] the app's set of record ids. ARGV: 1 the app's key names and prefixes as JSON
-- (streams/storage/layout.py, AppKeys.names), 2 mode ('ids', 'assoc' or 'all'),
-- then the record ids or the associations ("model:id").
-- Reply: one {id, {field, JSON value, ...}, {association, ...}, revision} per record found,
-- ordered by id.
local names, mode = cjson.decode(ARGV[1]), ARGV[2]
local found = {}
if mode == 'all' then
  found = redis.call('SMEMBERS', KEYS[1])
elseif mode == 'ids' then
  for i = 3, #ARGV do
    if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 then found[#found + 1] = ARGV[i] end
  end
else
  local keys = {}
  for i = 3, #ARGV do keys[#keys + 1] = names.assoc .. ARGV[i] end
  found = redis.call('SINTER', unpack(keys))
end
table.sort(found)
local out = {}
for _, rid in ipairs(found) do
  out[#out + 1] = {rid, redis.call('HGETALL', names.rec .. rid),
                   redis.call('SMEMBERS', names.links .. rid),
                   redis.call('HGET', names.rev, rid) or '0'}
end
return out
