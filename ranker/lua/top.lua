-- Read one ranking's decay state and its top members in one atomic step, so a concurrent
-- rebase can never pair old scores with a new landmark.
-- KEYS[1] scores, KEYS[2] decay state; ARGV[1] how many members.
-- Returns {landmark, half_life, id1, score1, id2, score2, ...}; landmark false when empty.
local state = redis.call('HMGET', KEYS[2], 'landmark', 'half_life')
if not state[1] then
  return {false, false}
end
local result = {state[1], state[2]}
local top = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
for i = 1, #top do
  result[#result + 1] = top[i]
end
return result
