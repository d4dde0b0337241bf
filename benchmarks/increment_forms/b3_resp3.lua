-- (b3) As (b), but ZMSCORE answers in RESP3: each score reaches Lua as a number ({double = x}),
-- not as text for tonumber.
local CHUNK = 1000
local function add_all(profiles, members, n)
  for _, p in ipairs(profiles) do
    for first = 1, n, CHUNK do
      local last = math.min(first + CHUNK - 1, n)
      redis.setresp(3)
      local current = redis.call('ZMSCORE', p.scores, unpack(members, first, last))
      redis.setresp(2)
      local updates = {}
      for i = first, last do
        local amount = tonumber(ARGV[p.first + i]) * p.factor
        local old = current[i - first + 1]
        if old then
          amount = old.double + amount
        end
        updates[#updates + 1] = amount
        updates[#updates + 1] = members[i]
      end
      redis.call('ZADD', p.scores, unpack(updates))
    end
  end
end
