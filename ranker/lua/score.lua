-- One article's stored score in one ranking, with the decay state it is relative to.
-- KEYS[1] scores, KEYS[2] decay state; ARGV[1] article id.
-- Returns {landmark, half_life, score}; any of them false when absent.
local state = redis.call('HMGET', KEYS[2], 'landmark', 'half_life')
return {state[1], state[2], redis.call('ZSCORE', KEYS[1], ARGV[1])}
