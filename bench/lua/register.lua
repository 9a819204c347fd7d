-- wrk script: register exactly N distinct peers (env PEERS, default 100000), spread over the T info hashes of
-- the file named by $POOL (one 40-digit hex hash per line; bench/tracker gives the memory run's 10,000):
-- request i announces torrent i % T with peer id "-BENCH-" .. i and port 1024 + i / T, so that every
-- (torrent, ip, port) and every peer id is distinct (N / T must stay under 64,512). Run with one thread (-t1);
-- it stops once N responses arrived: it exits the whole wrk process then (wrk's thread:stop() would still wait
-- out -d).
local pool = {}

local function load_pool()
  local f = assert(io.open(assert(os.getenv("POOL"), "set POOL"), "r"))
  for line in f:lines() do
    if #line >= 40 then
      pool[#pool + 1] = line:sub(1, 40):gsub("..", function(h) return "%" .. h end)
    end
  end
  f:close()
  assert(#pool > 0, "the pool holds no hash")
end
local n, done, total = 0, 0, tonumber(os.getenv("PEERS") or "100000")

function init(args)
  load_pool()
  assert(total / #pool < 64512, "too many peers per torrent for distinct ports")
end

function request()
  local i = n % total
  n = n + 1
  local path = "/announce?info_hash=" .. pool[(i % #pool) + 1]
    .. "&peer_id=" .. string.format("-BENCH-%013d", i)
    .. "&port=" .. (1024 + math.floor(i / #pool))
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
