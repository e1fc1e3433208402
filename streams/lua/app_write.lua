-- One write to an app's persistence, atomically (create, update, remove, increment, by id or by
-- associations; or a dead letter). Every key lives under the app's hash tag, so the keys named
-- in ARGV[1] share KEYS[1]'s slot on Redis Cluster.
--
-- KEYS[1] the app's set of record ids.
-- ARGV: 1 the app's key names and prefixes as JSON (streams/storage/layout.py, AppKeys.names:
--       rev, done, seq, dead, and the prefixes rec, links, assoc), 2 op, 3 once token ('' for none), 4 dedupe window,
--       5 record id (or the id of a record an upsert creates), 6 upsert (1/0),
--       7 expected revision ('' for any), 8 na, 9 nd, 10 field to increment, 11 increment,
--       then na associations ("model:id"), then nd (field, JSON value) pairs.
-- Reply: {applied (1, or 0 when the once token was seen before), result}.
-- Errors (checked before any write, so a failed call writes nothing):
--   EXISTS, NOTFOUND, CONFLICT <revision>, NOTINT <field>.
local names = cjson.decode(ARGV[1])
local op, once, window = ARGV[2], ARGV[3], tonumber(ARGV[4])
local id, upsert, expect = ARGV[5], ARGV[6] == '1', ARGV[7]
local na, nd = tonumber(ARGV[8]), tonumber(ARGV[9])
local field, by = ARGV[10], ARGV[11]
local afrom = 12
local dfrom = afrom + na
local ids = KEYS[1]
local revs = names.rev

local function rec(rid) return names.rec .. rid end
local function links(rid) return names.links .. rid end
local function assoc(a) return names.assoc .. a end

local replay = once ~= '' and redis.call('ZSCORE', names.done, once) ~= false

local function write_data(rid)
  redis.call('DEL', rec(rid))
  -- In chunks of whole pairs: Lua's unpack has a bounded stack.
  local from, to = dfrom, dfrom + 2 * nd - 1
  while from <= to do
    local upto = math.min(from + 999, to)
    redis.call('HSET', rec(rid), unpack(ARGV, from, upto))
    from = upto + 1
  end
  redis.call('HINCRBY', revs, rid, 1)
end

local function create(rid, with_data)
  if redis.call('SADD', ids, rid) == 0 then return false end
  for i = afrom, afrom + na - 1 do
    redis.call('SADD', links(rid), ARGV[i])
    redis.call('SADD', assoc(ARGV[i]), rid)
  end
  if with_data then write_data(rid) else redis.call('HINCRBY', revs, rid, 1) end
  return true
end

local function remove(rid)
  if redis.call('SREM', ids, rid) == 0 then return false end
  local data = redis.call('HGETALL', rec(rid))
  for _, a in ipairs(redis.call('SMEMBERS', links(rid))) do
    redis.call('SREM', assoc(a), rid)
  end
  redis.call('DEL', rec(rid), links(rid))
  redis.call('HDEL', revs, rid)
  return data
end

local function matching()
  local found
  if na == 1 then
    found = redis.call('SMEMBERS', assoc(ARGV[afrom]))
  else
    local keys = {}
    for i = afrom, afrom + na - 1 do keys[#keys + 1] = assoc(ARGV[i]) end
    found = redis.call('SINTER', unpack(keys))
  end
  table.sort(found)
  return found
end

local function current(rids)
  local out = {}
  for _, rid in ipairs(rids) do
    out[#out + 1] = rid
    out[#out + 1] = redis.call('HGET', rec(rid), field) or false
  end
  return out
end

local function check_integers(rids)
  for _, rid in ipairs(rids) do
    local held = redis.call('HGET', rec(rid), field)
    if held and not string.match(held, '^%-?%d+$') then
      return redis.error_reply('NOTINT ' .. field .. ' of record ' .. rid .. ' holds ' .. held)
    end
  end
  return nil
end

local function increment(rids)
  local out = {}
  for _, rid in ipairs(rids) do
    local value = redis.pcall('HINCRBY', rec(rid), field, by)
    if type(value) == 'table' and value.err then
      return redis.error_reply('NOTINT ' .. field .. ' of record ' .. rid .. ': ' .. value.err)
    end
    redis.call('HINCRBY', revs, rid, 1)
    out[#out + 1] = rid
    out[#out + 1] = tostring(value)
  end
  return out
end

local result
if op == 'create' then
  if replay then return {0, id} end
  if not create(id, true) then return redis.error_reply('EXISTS ' .. id) end
  result = id
elseif op == 'update' then
  if replay then return {0, id} end
  local exists = redis.call('SISMEMBER', ids, id) == 1
  if expect ~= '' and (redis.call('HGET', revs, id) or '0') ~= expect then
    return redis.error_reply('CONFLICT ' .. (redis.call('HGET', revs, id) or '0'))
  end
  if exists then write_data(id)
  elseif upsert then create(id, true)
  else return redis.error_reply('NOTFOUND ' .. id) end
  result = id
elseif op == 'update_assoc' then
  local found = matching()
  if replay then return {0, found} end
  if #found == 0 and upsert then
    create(id, true)
    found = {id}
  else
    for _, rid in ipairs(found) do write_data(rid) end
  end
  result = found
elseif op == 'remove' then
  if replay then return {0, false} end
  result = remove(id)
elseif op == 'remove_assoc' then
  local found = matching()
  if replay then return {0, {}} end
  result = {}
  for _, rid in ipairs(found) do
    result[#result + 1] = rid
    result[#result + 1] = remove(rid)
  end
elseif op == 'incr' or op == 'incr_assoc' then
  local found
  if op == 'incr' then
    found = {}
    if redis.call('SISMEMBER', ids, id) == 1 then found = {id} end
  else
    found = matching()
  end
  if replay then return {0, current(found)} end
  if #found == 0 then
    if not upsert then
      if op == 'incr' then return redis.error_reply('NOTFOUND ' .. id) end
      return {1, {}}
    end
    create(id, false)
    found = {id}
  end
  local bad = check_integers(found)
  if bad then return bad end
  result = increment(found)
elseif op == 'dead' then
  -- A dead letter: the data pairs are the stream entry's fields (kept as given, not JSON).
  if replay then return {0, false} end
  result = redis.call('XADD', names.dead, 'MAXLEN', '~', by, '*', unpack(ARGV, dfrom, dfrom + 2 * nd - 1))
else
  return redis.error_reply('unknown op ' .. op)
end

if once ~= '' then
  local n = redis.call('INCR', names.seq)
  redis.call('ZADD', names.done, n, once)
  if redis.call('ZCARD', names.done) > window then
    redis.call('ZREMRANGEBYRANK', names.done, 0, -(window + 1))
  end
end
return {1, result}
