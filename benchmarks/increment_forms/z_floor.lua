-- (z) Not a form to use (it stores the amounts, not the sums): the current data path with no
-- number handled in Lua, ZMSCORE then ZADD of the amounts as sent. What no form of
-- ZMSCORE + ZADD can get under; the rest of (b) is Lua's share.
local CHUNK = 1000
local function add_all(profiles, members, n)
  for _, p in ipairs(profiles) do
    for first = 1, n, CHUNK do
      local last = math.min(first + CHUNK - 1, n)
      redis.call('ZMSCORE', p.scores, unpack(members, first, last))
      local updates = {}
      for i = first, last do
        updates[#updates + 1] = ARGV[p.first + i]
        updates[#updates + 1] = members[i]
      end
      redis.call('ZADD', p.scores, unpack(updates))
    end
  end
end
