-- One article's stored score in every profile of one ranking, with the decay state each is
-- relative to, read atomically (a rebase changes both).
-- KEYS: scores, decay state of each profile in turn (one ranking: one hash tag); ARGV[1]: id.
-- Returns {landmark, half_life, score} per profile, flattened; all false where the ranking's
-- profile does not hold the article (its decay state is then not read: most articles asked
-- for are in few rankings, or none).
local found = {}
for i = 1, #KEYS, 2 do
  local score = redis.call('ZSCORE', KEYS[i], ARGV[1])
  if score then
    local state = redis.call('HMGET', KEYS[i + 1], 'landmark', 'half_life')
    found[#found + 1] = state[1]
    found[#found + 1] = state[2]
  else
    found[#found + 1] = false
    found[#found + 1] = false
  end
  found[#found + 1] = score
end
return found
