-- (c) One ZINCRBY per (article, profile): Redis adds; Lua only scales the amount.
local function add_all(profiles, members, n)
  for _, p in ipairs(profiles) do
    for i = 1, n do
      redis.call('ZINCRBY', p.scores, tonumber(ARGV[p.first + i]) * p.factor, members[i])
    end
  end
end
