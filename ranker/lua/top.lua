-- Read one ranking's decay state and its best members that are not hidden, in one atomic step,
-- so a concurrent rebase can never pair old scores with a new landmark.
-- KEYS[1] scores, KEYS[2] decay state, KEYS[3] hidden ids; ARGV[1] how many members.
-- Returns {landmark, half_life, members, id1, score1, id2, score2, ...}; landmark false when
-- empty. members is the size of the whole set, for the ops who watch it fill.
local state = redis.call('HMGET', KEYS[2], 'landmark', 'half_life')
if not state[1] then
  return {false, false, 0}
end
local result = {state[1], state[2], redis.call('ZCARD', KEYS[1])}
local wanted = tonumber(ARGV[1])
local found, start, page = 0, 0, wanted + 8
while found < wanted do
  local chunk = redis.call('ZREVRANGE', KEYS[1], start, start + page - 1, 'WITHSCORES')
  for i = 1, #chunk, 2 do
    if redis.call('SISMEMBER', KEYS[3], chunk[i]) == 0 then
      result[#result + 1] = chunk[i]
      result[#result + 1] = chunk[i + 1]
      found = found + 1
      if found == wanted then
        break
      end
    end
  end
  if #chunk < 2 * page then
    break
  end
  start = start + page
  page = page * 2
end
return result
