-- (e) Every profile of the ranking in one pass per chunk: one ZMSCORE per profile, then one
-- loop over the articles that reads each id once and updates all profiles.
local CHUNK = 1000
local function add_all(profiles, members, n)
  for first = 1, n, CHUNK do
    local last = math.min(first + CHUNK - 1, n)
    local current, updates = {}, {}
    for k, p in ipairs(profiles) do
      current[k] = redis.call('ZMSCORE', p.scores, unpack(members, first, last))
      updates[k] = {}
    end
    for i = first, last do
      local member = members[i]
      for k, p in ipairs(profiles) do
        local amount = tonumber(ARGV[p.first + i]) * p.factor
        local old = current[k][i - first + 1]
        if old then
          amount = tonumber(old) + amount
        end
        local u = updates[k]
        u[#u + 1] = amount
        u[#u + 1] = member
      end
    end
    for k, p in ipairs(profiles) do
      redis.call('ZADD', p.scores, unpack(updates[k]))
    end
  end
end
