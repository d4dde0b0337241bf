-- wrk script: write `depth` requests at a time on each connection (HTTP/1.1 pipelining), so
-- the load generator spends a fraction of the CPU per request it would otherwise. The server
-- still parses and answers every request on its own.
init = function(args)
  local depth = tonumber(args[1]) or 8
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format(nil)
  end
  pipelined = table.concat(batch)
end

request = function()
  return pipelined
end
