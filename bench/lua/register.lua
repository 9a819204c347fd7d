-- wrk script: register exactly N distinct peers (env PEERS, default 100000), spread over the same pool of
-- 1000 info hashes: request i announces torrent i % 1000 with peer id "-BENCH-" .. i and port 1024 + i / 1000,
-- so that every (torrent, ip, port) and every peer id is distinct. Run with one thread (-t1); it stops once
-- N responses arrived: it exits the whole wrk process then (wrk's thread:stop() would still wait out -d).
local pool = {}

-- The pool of 1000 info hashes: one 40-digit hex hash per line of the file named by $POOL (bench/tracker writes
-- it, and opentracker's whitelist is the same file), URL-escaped once here.
local function load_pool()
  local f = assert(io.open(assert(os.getenv("POOL"), "set POOL"), "r"))
  for line in f:lines() do
    if #line >= 40 then
      pool[#pool + 1] = line:sub(1, 40):gsub("..", function(h) return "%" .. h end)
    end
  end
  f:close()
  assert(#pool == 1000, "the pool must hold 1000 hashes")
end
local n, done, total = 0, 0, tonumber(os.getenv("PEERS") or "100000")

function init(args)
  load_pool()
end

function request()
  local i = n % total
  n = n + 1
  local path = "/announce?info_hash=" .. pool[(i % 1000) + 1]
    .. "&peer_id=" .. string.format("-BENCH-%013d", i)
    .. "&port=" .. (1024 + math.floor(i / 1000))
    .. "&uploaded=0&downloaded=0&left=1000&numwant=0&compact=1"
  return wrk.format("GET", path)
end

function response(status, headers, body)
  done = done + 1
  if done >= total then
    io.write(string.format("registered %d peers\n", done))
    io.flush()
    os.exit(0)
  end
end
