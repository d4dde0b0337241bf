-- (f) The caller sends amount * factor, scaled to the landmark it expects, as text: one
-- ZINCRBY per (article, profile) with that text as is, no number in Lua at all. A profile
-- whose landmark is not the one expected (a rebase, a reset) fails the call here (before any
-- write of the form's own); a real script would answer so, for the caller to send again.
local function add_all(profiles, members, n)
  for _, p in ipairs(profiles) do
    if tonumber(p.hint) ~= p.factor then
      error('landmark moved: ' .. p.scores)
    end
  end
  for _, p in ipairs(profiles) do
    for i = 1, n do
      redis.call('ZINCRBY', p.scores, ARGV[p.first + i], members[i])
    end
  end
end
