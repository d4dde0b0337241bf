-- Mark a batch's (visitor, article) pairs seen, for the dedup window; all KEYS in one slot.
-- KEYS: one mark per pair. ARGV[1]: the batch's token, ARGV[2]: the window, seconds.
-- Returns, per key, 1 when the view counts: the mark was not set, or was set by this same
-- batch (a retry with its Idempotency-Key must not be deduplicated against its first try);
-- 0 when another batch set it within the window.
local token, window = ARGV[1], ARGV[2]
local counts = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, token, 'NX', 'EX', window) or redis.call('GET', key) == token then
    counts[i] = 1
  else
    counts[i] = 0
  end
end
return counts
