-- Persist one round of engine decisions, for every input partition in it, atomically.
-- KEYS[2i-1], KEYS[2i] the fence hash and outbox list of the round's i-th partition (i = 1..p),
-- KEYS[2p+1..] the round's state keys.
-- ARGV[1] p; then six per partition: the caller's assignment token, the first and last
-- offset of its records, how many entries at the head of its outbox Kafka acknowledged
-- (dropped first), its new outbox entry ('' for none), and the offset the caller believes the
-- fence holds (its last applied); then the writes as one JSON array
-- of groups of four: op, key index (1 = KEYS[2p+1], the first state key), field, value
-- (strings but the key index).
--   H: HSET   D: HDEL   I: HINCRBY, dropping the field at 0 or below
--   L: RPUSH the field   T: keep the newest `value` items of a list
-- A key's writes keep their order; writes to different keys may be reordered.
-- Every fence is checked before anything is written: one stale partition refuses the round,
-- naming its position (1-based) so that the caller can drop it and try the rest again. A token
-- or fence behind the caller's means the store lost acknowledged writes (a failover): BEHIND.
local p = tonumber(ARGV[1])
for i = 1, p do
  local fence, at = KEYS[2 * i - 1], 2 + 6 * (i - 1)
  local held = redis.call('HMGET', fence, 'token', 'offset')
  local token = held[1]
  local applied = tonumber(held[2] or '-1')
  if tonumber(token or '0') < tonumber(ARGV[at]) or applied < tonumber(ARGV[at + 5]) then
    return redis.error_reply('BEHIND ' .. i .. ' partition token ' .. tostring(token) .. ' and fence ' .. applied .. ', caller has ' .. ARGV[at] .. ' and ' .. ARGV[at + 5])
  end
  if token ~= ARGV[at] then
    return redis.error_reply('FENCED ' .. i .. ' partition token is ' .. tostring(token) .. ', caller has ' .. ARGV[at])
  end
  if tonumber(ARGV[at + 1]) <= applied then
    return redis.error_reply('REAPPLY ' .. i .. ' offset ' .. ARGV[at + 1] .. ' was applied already (fence ' .. applied .. ')')
  end
end
for i = 1, p do
  local at = 2 + 6 * (i - 1)
  local acked = tonumber(ARGV[at + 3])
  if acked > 0 then
    redis.call('LTRIM', KEYS[2 * i], acked, -1)
  end
  if ARGV[at + 4] ~= '' then
    redis.call('RPUSH', KEYS[2 * i], ARGV[at + 4])
  end
  redis.call('HSET', KEYS[2 * i - 1], 'offset', ARGV[at + 2])
end
local ops = cjson.decode(ARGV[2 + 6 * p])
local base = 2 * p
-- Each redis.call costs Redis several times what the field it writes does (the call itself,
-- and its copy to the AOF), so the writes go key by key: a key's writes, in their order, as
-- one call per run of one op (a round's responses to one message write its keys many times,
-- scattered through the array).
local order, at_key = {}, {}
for i = 1, #ops, 4 do
  local k = ops[i + 1]
  local run = at_key[k]
  if run == nil then
    run = {}
    at_key[k] = run
    order[#order + 1] = k
  end
  run[#run + 1] = i
end
-- unpack() is bounded by Lua's C stack: at most 4000 arguments a call.
local function call_in_slices(command, key, args)
  for first = 1, #args, 3998 do
    redis.call(command, key, unpack(args, first, math.min(first + 3997, #args)))
  end
end
for _, k in ipairs(order) do
  local key, at = KEYS[base + k], at_key[k]
  local n, j = #at, 1
  while j <= n do
    local op = ops[at[j]]
    local last = j
    while last < n and ops[at[last + 1]] == op do
      last = last + 1
    end
    if op == 'H' then
      local args = {}
      for r = j, last do
        args[#args + 1] = ops[at[r] + 2]
        args[#args + 1] = ops[at[r] + 3]
      end
      call_in_slices('HSET', key, args)
    elseif op == 'L' or op == 'D' then
      local args = {}
      for r = j, last do
        args[#args + 1] = ops[at[r] + 2]
      end
      call_in_slices(op == 'L' and 'RPUSH' or 'HDEL', key, args)
    elseif op == 'I' and last - j >= 2 then
      -- Three or more counts of one hash: read them, then write the sums and drop the
      -- fields at 0 or below, in three calls instead of one or two per field.
      local fields, delta = {}, {}
      for r = j, last do
        local field = ops[at[r] + 2]
        if delta[field] == nil then
          fields[#fields + 1] = field
          delta[field] = 0
        end
        delta[field] = delta[field] + tonumber(ops[at[r] + 3])
      end
      local sets, drops = {}, {}
      for first = 1, #fields, 3998 do
        local slice = {unpack(fields, first, math.min(first + 3997, #fields))}
        local now = redis.call('HMGET', key, unpack(slice))
        for s = 1, #slice do
          local old = now[s] and tonumber(now[s])
          if now[s] and old == nil then
            return redis.error_reply('count ' .. slice[s] .. ' of ' .. key .. ' is not an integer')
          end
          local sum = (old or 0) + delta[slice[s]]
          if sum > 0 then
            sets[#sets + 1] = slice[s]
            sets[#sets + 1] = string.format('%d', sum)
          elseif now[s] then
            drops[#drops + 1] = slice[s]
          end
        end
      end
      call_in_slices('HSET', key, sets)
      call_in_slices('HDEL', key, drops)
    elseif op == 'I' then
      for r = j, last do
        local field = ops[at[r] + 2]
        if redis.call('HINCRBY', key, field, ops[at[r] + 3]) <= 0 then
          redis.call('HDEL', key, field)
        end
      end
    elseif op == 'T' then
      for r = j, last do
        redis.call('LTRIM', key, -tonumber(ops[at[r] + 3]), -1)
      end
    else
      return redis.error_reply('unknown op ' .. op)
    end
    j = last + 1
  end
end
return p
