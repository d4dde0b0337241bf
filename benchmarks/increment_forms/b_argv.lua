-- (b) The current script's ZMSCORE + ZADD per chunk, its amounts read from ARGV (no JSON).
local CHUNK = 1000
local function add_all(profiles, members, n)
  for _, p in ipairs(profiles) do
    for first = 1, n, CHUNK do
      local last = math.min(first + CHUNK - 1, n)
      local current = redis.call('ZMSCORE', p.scores, unpack(members, first, last))
      local updates = {}
      for i = first, last do
        local amount = tonumber(ARGV[p.first + i]) * p.factor
        local old = current[i - first + 1]
        if old then
          amount = tonumber(old) + amount
        end
        updates[#updates + 1] = amount
        updates[#updates + 1] = members[i]
      end
      redis.call('ZADD', p.scores, unpack(updates))
    end
  end
end
