-- Apply one flush's increments to one ranking, in every profile it is kept in (the default one
-- and each named window: the same views, each with its own half-life), atomically; or queue
-- them in the ranking's slot, for a later call to apply with its own in one pass.
-- KEYS[1] the tokens of the keyed batches already counted in this ranking (zset, scored by
--         expiry), then per profile: its scores (zset), its decay state (hash: landmark,
--         half_life, changed_at); last, the flushes queued for it (list). All in the ranking's
--         one slot.
-- ARGV: reference_ts, now, rebase_after, prune_below, max_members, settle_s, the seconds a token
--       is remembered, the tokens of the flush's keyed batches (MessagePack list), the flush's
--       data as MessagePack: [article ids, amounts of profile 1, amounts of profile 2, ...],
--       each profile's amounts in the order of the ids (false where the profile has none for
--       an article), then each profile's half-life, then the mode: 'apply' (this flush and
--       every one queued before it, now) or 'queue' (record the tokens and queue the data:
--       counted, and applied by the next call that applies). An amount is the sum of
--       w * 2^((t - reference_ts) / half_life) over the flush's views, those of the keyed
--       batches (the tokens) included. Nothing is queued or applied if this ranking has counted
--       any of the tokens, and the tokens are recorded in the same step: a batch retried with
--       its Idempotency-Key is counted once here, in every profile, whatever became of the
--       first try. The data in one argument, not thousands: redis-py encodes each argument in
--       Python, which cost a third of ingest's CPU; MessagePack rather than JSON, as cmsgpack
--       reads each amount's 8 bytes back as the same double, where text would have to be parsed
--       (ranker/store/writes.py, increment_spec).
-- Why queue: Redis's work is one ZMSCORE and ZADD member per (article, profile) a call applies,
-- whatever number of views it sums; the flushes of a busy spell hold the same popular articles
-- again and again, so applying several in one pass does the same sums (added in another order,
-- so equal to the last bits or so) for a fraction of the work (benchmarks/RESULTS.md, issue 16).
-- Returns {members of the first profile after the update (0 when queued), {}}, or {-1, {tokens
-- counted here before}} with nothing queued or applied.
local applied = KEYS[1]
local queued = KEYS[#KEYS]
local profiles = (#KEYS - 2) / 2
local reference_ts = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local rebase_after = tonumber(ARGV[3])
local prune_below = tonumber(ARGV[4])
local max_members = tonumber(ARGV[5])
local settle_s = tonumber(ARGV[6])
local remember_s = tonumber(ARGV[7])

-- %.17g round-trips every double, so rescales and landmarks stay exact across the Lua/Redis boundary.
local function num(x)
  return string.format('%.17g', x)
end

-- The tokens first: if any was counted here already, nothing is applied and they are returned,
-- for the caller to send this ranking's amounts again without those batches' share. Retries
-- are rare, so the usual flush is one merged set of amounts, as cheap as one without keys.
local tokens = cmsgpack.unpack(ARGV[8])
if #tokens > 0 then
  redis.call('ZREMRANGEBYSCORE', applied, '-inf', num(now))
  local replayed = {}
  for _, token in ipairs(tokens) do
    if redis.call('ZSCORE', applied, token) then
      replayed[#replayed + 1] = token
    end
  end
  if #replayed > 0 then
    return {-1, replayed}
  end
  local expires_at = num(now + remember_s)
  for _, token in ipairs(tokens) do
    redis.call('ZADD', applied, expires_at, token)
  end
  -- The set expires with its last entry, so an idle ranking keeps no tokens for ever.
  redis.call('EXPIRE', applied, math.ceil(remember_s))
end

-- A queued flush is kept as its reference_ts (8 bytes) and its data, as sent. At most
-- MAX_QUEUED wait: past that the call applies, whatever its mode, so a ranking nobody applies
-- (its callers all gone) holds a bounded backlog. Well above what a busy process queues between
-- its passes (about 200 flushes a second here, passes 0.3 s apart plus their own time): a
-- flush that hits it applies them all on the flush line, which every flush behind it waits for.
local MAX_QUEUED = 256
if ARGV[10 + profiles] == 'queue' and redis.call('LLEN', queued) < MAX_QUEUED then
  redis.call('RPUSH', queued, struct.pack('>d', reference_ts) .. ARGV[9])
  return {0, {}}
end

-- Every flush queued, oldest first, then this one: their reference times and their data.
local refs, flushes = {}, {}
for i, entry in ipairs(redis.call('LRANGE', queued, 0, -1)) do
  refs[i] = struct.unpack('>d', entry)
  flushes[i] = cmsgpack.unpack(string.sub(entry, 9))
end
if #refs > 0 then
  redis.call('DEL', queued)
end
refs[#refs + 1] = reference_ts
flushes[#flushes + 1] = cmsgpack.unpack(ARGV[9])
local newest = reference_ts
for _, ref in ipairs(refs) do
  newest = math.max(newest, ref)
end

-- One profile's amounts from every flush, as the stored values they add at the ranking's
-- landmark: article id -> sum, and the ids in the order first met.
local function amounts_at(profile, landmark, h)
  local counted, ids = {}, {}
  for f, flush in ipairs(flushes) do
    local factor = 2 ^ ((refs[f] - landmark) / h)
    local amounts = flush[profile + 1]
    for i, id in ipairs(flush[1]) do
      local amount = amounts[i]
      if amount then
        local sum = counted[id]
        if sum then
          counted[id] = sum + amount * factor
        else
          counted[id] = amount * factor
          ids[#ids + 1] = id
        end
      end
    end
  end
  return counted, ids
end

local function has_amounts(profile)
  for _, flush in ipairs(flushes) do
    for _, amount in ipairs(flush[profile + 1]) do
      if amount then
        return true
      end
    end
  end
  return false
end

-- One profile's update: returns the members its set holds after it.
local function apply(scores, decay, half_life, profile)
  if not has_amounts(profile) then
    return redis.call('ZCARD', scores)
  end
  local state = redis.call('HMGET', decay, 'landmark', 'half_life', 'changed_at')
  local landmark, stored_half_life = tonumber(state[1]), tonumber(state[2])
  local changed_at = tonumber(state[3]) or 0

  if landmark == nil or stored_half_life == nil or redis.call('ZCARD', scores) == 0 then
    -- Nothing stored (or state lost): stored values would be meaningless, start afresh here.
    redis.call('DEL', scores)
    landmark, stored_half_life, changed_at = newest, half_life, now
  elseif stored_half_life ~= half_life and now - changed_at >= settle_s then
    -- The half-life was reconfigured: keep every article's current score, decay it at the new
    -- rate from now on. At most once per settle_s, so replicas that disagree for the length of a
    -- rolling deploy do not rescale the set back and forth on every flush.
    redis.call('ZUNIONSTORE', scores, 1, scores, 'WEIGHTS', num(2 ^ (-(now - landmark) / stored_half_life)))
    landmark, stored_half_life, changed_at = now, half_life, now
  end
  -- From here on the stored half-life rules: it is the one readers decay by. A replica still on
  -- another value only weighs its views' ages within its flushes by its own.
  local h = stored_half_life

  local behind = math.floor((newest - landmark) / h)
  if behind > rebase_after then
    -- Multiplying by an exact power of two loses nothing; anything it would push below the
    -- smallest double has long decayed past prune_below and is pruned below anyway.
    if behind > 1000 then
      redis.call('DEL', scores)
    else
      redis.call('ZUNIONSTORE', scores, 1, scores, 'WEIGHTS', num(2 ^ -behind))
    end
    landmark = landmark + behind * h
  end
  redis.call('HSET', decay, 'landmark', num(landmark), 'half_life', num(h), 'changed_at', num(changed_at))

  local counted, mine = amounts_at(profile, landmark, h)
  -- Read the current scores and write the new ones a chunk at a time: two commands per chunk
  -- instead of one ZINCRBY per article, which made each call from Lua the bulk of Redis's work.
  -- The sums are the same double arithmetic ZINCRBY does, and Redis turns a Lua number into a
  -- command argument with %.17g, so they arrive exact. Chunks stay well under Lua's limit on
  -- unpacked values.
  local chunk = 1000
  for first = 1, #mine, chunk do
    local members = {unpack(mine, first, math.min(first + chunk - 1, #mine))}
    local current = redis.call('ZMSCORE', scores, unpack(members))
    local updates = {}
    for j, member in ipairs(members) do
      local amount = counted[member]
      local old = current[j]
      if old then
        amount = tonumber(old) + amount
      end
      updates[2 * j - 1] = amount
      updates[2 * j] = member
    end
    redis.call('ZADD', scores, unpack(updates))
  end

  -- Drop what has decayed below the floor, but never an article these flushes counted: light
  -- views (a weight under the floor, an old backfilled view) must be able to add up.
  local floor = prune_below * 2 ^ ((now - landmark) / h)
  local fading = redis.call('ZRANGEBYSCORE', scores, '-inf', '(' .. num(floor))
  for _, member in ipairs(fading) do
    if not counted[member] then
      redis.call('ZREM', scores, member)
    end
  end
  local members = redis.call('ZCARD', scores)
  if members > max_members then
    redis.call('ZREMRANGEBYRANK', scores, 0, members - max_members - 1)
    members = max_members
  end
  return members
end

local first
for profile = 1, profiles do
  local members = apply(KEYS[2 * profile], KEYS[2 * profile + 1], tonumber(ARGV[9 + profile]), profile)
  first = first or members
end
return {first or 0, {}}
