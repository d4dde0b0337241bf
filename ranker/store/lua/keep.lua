-- Keep the answer to a keyed batch once its views are all counted, after the digest of its body
-- that KEYS[1] holds from before they were sent (see RankingStore.claim_keys): ARGV[1] that
-- digest, ARGV[2] the answer, ARGV[3] the idempotency window in seconds. Only where the key
-- holds that digest and no answer yet: a retry keeps the first answer, not its own. A key lost
-- meanwhile is kept again. Returns 1 if the answer was kept, else 0.
local kept = redis.call('GET', KEYS[1])
if kept == false then
  redis.call('SET', KEYS[1], ARGV[1] .. ARGV[2], 'EX', ARGV[3])
  return 1
end
if kept == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. ARGV[2], 'KEEPTTL')
  return 1
end
return 0
