-- wrk script: one BEP 48 scrape for all 1000 info hashes of the pool ($POOL), the same request each time
-- (a 71 KB request line). bench/tracker counts how many torrents one answer holds for each server.
local path

function init(args)
  local parts = {}
  local f = assert(io.open(assert(os.getenv("POOL"), "set POOL"), "r"))
  for line in f:lines() do
    if #line >= 40 then
      parts[#parts + 1] = "info_hash=" .. line:sub(1, 40):gsub("..", function(h) return "%" .. h end)
    end
  end
  f:close()
  assert(#parts == 1000, "the pool must hold 1000 hashes")
  path = "/scrape?" .. table.concat(parts, "&")
end

function request()
  return wrk.format("GET", path)
end
