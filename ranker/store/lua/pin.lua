-- Pin an article to a slot of one ranking's lists, atomically: a pin never duplicates an item,
-- so the article leaves any other slot of this ranking it was pinned to, and pins past their
-- end are dropped on the way (they are ignored by reads already; this keeps the hash small).
-- KEYS[1] pins (slot -> JSON [id, ends]); ARGV[1] slot, ARGV[2] the pin's JSON, ARGV[3] article
-- id, ARGV[4] now. Returns {the article pinned at this slot before (false if none), the slot
-- this article was pinned to before (false if none)}.
local slot, id, now = ARGV[1], ARGV[3], tonumber(ARGV[4])
local replaced, moved_from = false, false
local pins = redis.call('HGETALL', KEYS[1])
for i = 1, #pins, 2 do
  local pin = cjson.decode(pins[i + 1])
  local ends = pin[2]
  local active = ends == cjson.null or ends > now
  if pins[i] == slot then
    if active and pin[1] ~= id then
      replaced = pin[1]
    end
  elseif not active then
    redis.call('HDEL', KEYS[1], pins[i])
  elseif pin[1] == id then
    redis.call('HDEL', KEYS[1], pins[i])
    moved_from = pins[i]
  end
end
redis.call('HSET', KEYS[1], slot, ARGV[2])
return {replaced, moved_from}
