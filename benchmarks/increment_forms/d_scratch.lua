-- (d) The amounts as they came (text) into a scratch set in the ranking's slot, then one
-- ZUNIONSTORE scores = scores + factor * scratch: no number crosses into Lua, but Redis
-- rebuilds the whole set.
local CHUNK = 1000
local function add_all(profiles, members, n)
  for _, p in ipairs(profiles) do
    local scratch = p.scores .. ':scratch'
    for first = 1, n, CHUNK do
      local last = math.min(first + CHUNK - 1, n)
      local pairs_ = {}
      for i = first, last do
        pairs_[#pairs_ + 1] = ARGV[p.first + i]
        pairs_[#pairs_ + 1] = members[i]
      end
      redis.call('ZADD', scratch, unpack(pairs_))
    end
    redis.call('ZUNIONSTORE', p.scores, 2, p.scores, scratch, 'WEIGHTS', 1, string.format('%.17g', p.factor))
    redis.call('DEL', scratch)
  end
end
