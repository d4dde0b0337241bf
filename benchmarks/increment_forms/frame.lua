-- The frame every measured form but the current script shares (benchmarks/increments.py puts
-- the form's add_all in front of it): the current script's work (tokens, decay state, rebase,
-- prune, trim), with its amounts as plain arguments instead of one JSON text.
-- KEYS as increment.lua's. ARGV: reference_ts, now, rebase_after, prune_below, max_members,
-- settle_s, remember_s, then the number of tokens, of profiles and of articles, each profile's
-- half-life, the tokens, the article ids (once for every profile), then per profile the factor
-- the caller expects (only the pre-scaled form reads it) and one amount per article, as text.
local applied = KEYS[1]
local reference_ts = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local rebase_after = tonumber(ARGV[3])
local prune_below = tonumber(ARGV[4])
local max_members = tonumber(ARGV[5])
local settle_s = tonumber(ARGV[6])
local remember_s = tonumber(ARGV[7])
local ntokens, nprofiles, n = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])

local function num(x)
  return string.format('%.17g', x)
end

local base = 10 + nprofiles
if ntokens > 0 then
  redis.call('ZREMRANGEBYSCORE', applied, '-inf', num(now))
  local replayed = {}
  for i = base + 1, base + ntokens do
    if redis.call('ZSCORE', applied, ARGV[i]) then
      replayed[#replayed + 1] = ARGV[i]
    end
  end
  if #replayed > 0 then
    return {-1, replayed}
  end
  local expires_at = num(now + remember_s)
  for i = base + 1, base + ntokens do
    redis.call('ZADD', applied, expires_at, ARGV[i])
  end
  redis.call('EXPIRE', applied, math.ceil(remember_s))
end
local members, counted = {}, {}
for i = 1, n do
  local member = ARGV[base + ntokens + i]
  members[i] = member
  counted[member] = true
end

-- One profile's decay state, as increment.lua keeps it: its landmark after any rebase.
local function prepare(scores, decay, half_life)
  local state = redis.call('HMGET', decay, 'landmark', 'half_life', 'changed_at')
  local landmark, stored_half_life = tonumber(state[1]), tonumber(state[2])
  local changed_at = tonumber(state[3]) or 0
  if landmark == nil or stored_half_life == nil or redis.call('ZCARD', scores) == 0 then
    redis.call('DEL', scores)
    landmark, stored_half_life, changed_at = reference_ts, half_life, now
  elseif stored_half_life ~= half_life and now - changed_at >= settle_s then
    redis.call('ZUNIONSTORE', scores, 1, scores, 'WEIGHTS', num(2 ^ (-(now - landmark) / stored_half_life)))
    landmark, stored_half_life, changed_at = now, half_life, now
  end
  local h = stored_half_life
  local behind = math.floor((reference_ts - landmark) / h)
  if behind > rebase_after then
    if behind > 1000 then
      redis.call('DEL', scores)
    else
      redis.call('ZUNIONSTORE', scores, 1, scores, 'WEIGHTS', num(2 ^ -behind))
    end
    landmark = landmark + behind * h
  end
  redis.call('HSET', decay, 'landmark', num(landmark), 'half_life', num(h), 'changed_at', num(changed_at))
  return landmark, h
end

local profiles = {}
local first
for p = 1, nprofiles do
  local scores = KEYS[2 * p]
  if n > 0 then
    local landmark, h = prepare(scores, KEYS[2 * p + 1], tonumber(ARGV[10 + p]))
    local start = base + ntokens + n + (p - 1) * (n + 1) + 1
    profiles[#profiles + 1] = {
      scores = scores, landmark = landmark, h = h,
      factor = 2 ^ ((reference_ts - landmark) / h), hint = ARGV[start], first = start,
    }
  end
end
add_all(profiles, members, n)
for p = 1, nprofiles do
  local scores = KEYS[2 * p]
  local count
  if n > 0 then
    local profile = profiles[p]
    local floor = prune_below * 2 ^ ((now - profile.landmark) / profile.h)
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', scores, '-inf', '(' .. num(floor))) do
      if not counted[member] then
        redis.call('ZREM', scores, member)
      end
    end
    count = redis.call('ZCARD', scores)
    if count > max_members then
      redis.call('ZREMRANGEBYRANK', scores, 0, count - max_members - 1)
      count = max_members
    end
  else
    count = redis.call('ZCARD', scores)
  end
  first = first or count
end
return {first or 0, {}}
