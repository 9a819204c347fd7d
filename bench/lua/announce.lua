-- wrk script: BEP 3 announces with compact=1 for a random info hash out of a pool of 1000 (read from $POOL),
-- a random peer id and port per request.
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
local function hex_escape(n)
  local out = {}
  for i = 1, n do out[i] = string.format("%%%02X", math.random(0, 255)) end
  return table.concat(out)
end

function init(args)
  load_pool()
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
  local path = "/announce?info_hash=" .. pool[math.random(1, 1000)]
    .. "&peer_id=" .. hex_escape(20)
    .. "&port=" .. math.random(1024, 65535)
    .. "&uploaded=0&downloaded=0&left=1000&numwant=50&compact=1"
  return wrk.format("GET", path)
end
