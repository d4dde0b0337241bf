-- Read one ranking's decay state, its editorial pins and its best members that are neither
-- hidden nor pinned, in one atomic step, so a concurrent rebase can never pair old scores with
-- a new landmark, nor a pin be read apart from the list it goes into.
-- KEYS[1] scores, KEYS[2] decay state, KEYS[3] hides (id -> when the hide ends), KEYS[4] pins
-- (slot -> JSON [id, when the pin ends], null: when unpinned); ARGV[1] how many members,
-- ARGV[2] now (epoch seconds).
-- Returns {landmark, half_life, members, pins, slot1, id1, stored1, ..., id1, score1, ...}:
-- landmark false when no score is stored; pins the number of active pins that follow, each with
-- its article's stored score (false when it has none); then the members, best first.
-- members is the size of the whole set, for the ops who watch it fill. A hide or pin whose
-- end is past is ignored: expiry needs no write.
local now = tonumber(ARGV[2])

local function hidden(id)
  local ends = redis.call('ZSCORE', KEYS[3], id)
  return ends and tonumber(ends) > now
end

local state = redis.call('HMGET', KEYS[2], 'landmark', 'half_life')
local result = {state[1] or false, state[2] or false, 0, 0}
local pinned = {}
local pins = redis.call('HGETALL', KEYS[4])
for i = 1, #pins, 2 do
  local pin = cjson.decode(pins[i + 1])
  local id, ends = pin[1], pin[2]
  if (ends == cjson.null or ends > now) and not hidden(id) and not pinned[id] then
    pinned[id] = true
    result[4] = result[4] + 1
    result[#result + 1] = pins[i]
    result[#result + 1] = id
    result[#result + 1] = redis.call('ZSCORE', KEYS[1], id) or false
  end
end
if not state[1] then
  return result
end
result[3] = redis.call('ZCARD', KEYS[1])
local wanted = tonumber(ARGV[1])
local found, start, page = 0, 0, wanted + 8
while found < wanted do
  local chunk = redis.call('ZREVRANGE', KEYS[1], start, start + page - 1, 'WITHSCORES')
  for i = 1, #chunk, 2 do
    local id = chunk[i]
    if not pinned[id] and not hidden(id) then
      result[#result + 1] = id
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
