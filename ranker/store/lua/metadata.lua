-- An article's title and url from events: each filled in only where unset, and what events
-- alone made expires ARGV[1] seconds after the last event that carried either. A hash that
-- existed without an expiry (the CMS's, an editor's) keeps none: only a hash this script made
-- is given one, and only a hash that has one has it renewed.
--
-- KEYS[1]  the article's metadata hash
-- ARGV[1]  seconds to keep it (positive)
-- ARGV[2..] field, value pairs: title and/or url
local key = KEYS[1]
local made_here = redis.call('EXISTS', key) == 0
for i = 2, #ARGV, 2 do
  redis.call('HSETNX', key, ARGV[i], ARGV[i + 1])
end
if made_here or redis.call('TTL', key) > 0 then
  redis.call('EXPIRE', key, ARGV[1])
end
return 0
