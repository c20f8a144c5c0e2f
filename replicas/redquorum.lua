#!lua name=redquorum
--[[
The replica-side half of redquorum, loaded with FUNCTION LOAD REPLACE by every proxy
when it connects. All read-modify-write of stored objects happens here, atomically, so
two proxies writing the same replica cannot interleave; and this is the only encoder of
stored bytes, so equal objects are equal bytes (proxy/clock.py has the theory).

Stored object (cmsgpack, arrays only, no maps: Lua table order is not deterministic):
  {1, {actor, counter, ...}, {{actor, counter, ts_us, tombstone(0/1), expire_at_ms, value}, ...}}
actors sorted by bytes (Lua's string < follows the locale), siblings by dot.
Numbers stay below 2^53 (Lua numbers are doubles).
]]

local FORMAT = 1

local function bytes_less(a, b)
  local la, lb = #a, #b
  local n = la
  if lb < n then n = lb end
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return la < lb
end

local function dot_less(x, y)
  if x[1] ~= y[1] then return bytes_less(x[1], y[1]) end
  return x[2] < y[2]
end

local function decode_clock(flat)
  local clock = {}
  for i = 1, #flat, 2 do clock[flat[i]] = flat[i + 1] end
  return clock
end

local function decode(blob)
  if not blob then return {}, {} end
  local ok, o = pcall(cmsgpack.unpack, blob)
  if not ok or type(o) ~= 'table' or o[1] ~= FORMAT then
    error({err = 'ERR redquorum: the key holds a value that redquorum did not write'})
  end
  return decode_clock(o[2]), o[3]
end

local function encode(clock, sibs)
  local actors = {}
  for a in pairs(clock) do actors[#actors + 1] = a end
  table.sort(actors, bytes_less)
  local flat = {}
  for i = 1, #actors do
    flat[2 * i - 1] = actors[i]
    flat[2 * i] = clock[actors[i]]
  end
  table.sort(sibs, dot_less)
  return cmsgpack.pack({FORMAT, flat, sibs})
end

-- When every sibling is dead (tombstone or expired), the key itself expires once the
-- newest death is older than the grace period: until then it stops stale replicas from
-- bringing the value back through repair.
local function store(key, clock, sibs, grace_ms, old)
  if #sibs == 0 then return old end
  local blob = encode(clock, sibs)
  if blob == old then return blob end
  local last = 0
  for _, s in ipairs(sibs) do
    local death
    if s[4] == 1 then
      death = math.floor(s[3] / 1000)
    elseif s[5] > 0 then
      death = s[5]
    else
      last = nil
      break
    end
    if death > last then last = death end
  end
  if last then
    redis.call('SET', key, blob, 'PXAT', last + grace_ms)
  else
    redis.call('SET', key, blob)
  end
  return blob
end

local function covered(clock, s)
  local c = clock[s[1]]
  return c ~= nil and c >= s[2]
end

local function dot_key(s)
  return s[1] .. '\0' .. s[2]
end

local function sync(c1, s1, c2, s2)
  local d1, d2 = {}, {}
  for _, s in ipairs(s1) do d1[dot_key(s)] = true end
  for _, s in ipairs(s2) do d2[dot_key(s)] = true end
  local out = {}
  for _, s in ipairs(s1) do
    if d2[dot_key(s)] or not covered(c2, s) then out[#out + 1] = s end
  end
  for _, s in ipairs(s2) do
    if not d1[dot_key(s)] and not covered(c1, s) then out[#out + 1] = s end
  end
  local clock = {}
  for a, c in pairs(c1) do clock[a] = c end
  for a, c in pairs(c2) do
    if (clock[a] or 0) < c then clock[a] = c end
  end
  return clock, out
end

local function alive(s, now_ms)
  return s[4] == 0 and (s[5] == 0 or s[5] > now_ms)
end

-- The live sibling a plain GET answers: highest (timestamp, actor).
local function winner(sibs, now_ms)
  local best
  for _, s in ipairs(sibs) do
    if alive(s, now_ms) then
      if best == nil or s[3] > best[3] or (s[3] == best[3] and bytes_less(best[1], s[1])) then
        best = s
      end
    end
  end
  return best
end

local function count_live(sibs, now_ms)
  local n = 0
  for _, s in ipairs(sibs) do
    if alive(s, now_ms) then n = n + 1 end
  end
  return n
end

---------------------------------------------------------------------------
-- Operations: each gets the current winner (or nil) and its arguments, and returns
-- either a new sibling (value, expire_at, tombstone) and a reply, or nil and a reply
-- (nothing to write). Errors are raised with Redis's own texts.

local function parse_int(s)
  if s == nil or #s == 0 or #s > 20 or not string.match(s, '^%-?%d+$') then return nil end
  if string.match(s, '^%-?0%d') or s == '-0' then return nil end
  local n = tonumber(s)
  if n == nil or n >= 9223372036854775807 or n <= -9223372036854775808 then return nil end
  if n > 9007199254740992 or n < -9007199254740992 then return nil end
  return n
end

local OPS = {}

-- set value expire_mode(''|at|keep) expire_at cond(''|NX|XX) get(0|1)
OPS.set = function(cur, a, now_ms)
  local value, mode, at, cond, get = a[1], a[2], tonumber(a[3]), a[4], a[5]
  local old = false
  if cur and get == '1' then old = cur[6] end
  if (cond == 'NX' and cur) or (cond == 'XX' and not cur) then
    return nil, old
  end
  local exp = 0
  if mode == 'at' then exp = at elseif mode == 'keep' and cur then exp = cur[5] end
  return value, exp, 0, old
end

-- del: a tombstone; the reply says whether a live value was here
OPS.del = function(cur, a, now_ms)
  if cur then return '', 0, 1, 1 end
  return '', 0, 1, 0
end

-- rqset: a context-carrying write from RQ.SET (expire_at absolute ms or 0)
OPS.rqset = function(cur, a, now_ms)
  return a[1], tonumber(a[2]), 0, 1
end

OPS.incrby = function(cur, a, now_ms)
  local n = 0
  local exp = 0
  if cur then
    n = parse_int(cur[6])
    exp = cur[5]
    if n == nil then error({err = 'ERR value is not an integer or out of range'}) end
  end
  local by = tonumber(a[1])
  local r = n + by
  if r > 9007199254740992 or r < -9007199254740992 then
    error({err = 'ERR increment or decrement would overflow'})
  end
  local text = string.format('%d', r)
  return text, exp, 0, r
end

OPS.append = function(cur, a, now_ms)
  local v, exp = '', 0
  if cur then v, exp = cur[6], cur[5] end
  v = v .. a[1]
  return v, exp, 0, #v
end

-- getdel: a tombstone if there is a value, answering it
OPS.getdel = function(cur, a, now_ms)
  if cur then return '', 0, 1, cur[6] end
  return nil, false
end

-- expire: new absolute expiry (ms; 0 = persist) for the current value, if any.
-- a = {mode('at'|'persist'), at, cond(''|NX|XX|GT|LT)}; reply 1 when changed else 0
OPS.expire = function(cur, a, now_ms)
  if not cur then return nil, 0 end
  local mode, at, cond = a[1], tonumber(a[2]), a[3]
  local exp = cur[5]
  if mode == 'persist' then
    if exp == 0 then return nil, 0 end
    return cur[6], 0, 0, 1
  end
  -- Redis treats "no expiry" as infinite for GT/LT
  if cond == 'NX' and exp ~= 0 then return nil, 0 end
  if cond == 'XX' and exp == 0 then return nil, 0 end
  if cond == 'GT' and (exp == 0 or at <= exp) then return nil, 0 end
  if cond == 'LT' and exp ~= 0 and at >= exp then return nil, 0 end
  if at <= now_ms then return '', 0, 1, 1 end
  return cur[6], at, 0, 1
end

---------------------------------------------------------------------------
-- Entry points

-- rq_put key | actor now_us context grace_ms sibling_hard_limit op op-args...
-- context: '' (saw nothing), '*' (everything held here), or a msgpack clock.
-- Returns {new object bytes or false when nothing was written, op reply}.
local function put(keys, args)
  local key = keys[1]
  local actor, now_us, ctx_arg = args[1], tonumber(args[2]), args[3]
  local grace, hard, op = tonumber(args[4]), tonumber(args[5]), OPS[args[6]]
  if op == nil then error({err = 'ERR redquorum: unknown operation ' .. tostring(args[6])}) end
  local old = redis.call('GET', key)
  local clock, sibs = decode(old)
  local now_ms = math.floor(now_us / 1000)
  local op_args = {}
  for i = 7, #args do op_args[#op_args + 1] = args[i] end
  local value, exp, tomb, reply = op(winner(sibs, now_ms), op_args, now_ms)
  if value == nil then return {false, exp} end

  local ctx
  if ctx_arg == '*' then
    ctx = clock
  elseif ctx_arg == '' then
    ctx = {}
  else
    ctx = decode_clock(cmsgpack.unpack(ctx_arg))
  end
  local kept, newest = {}, 0
  for _, s in ipairs(sibs) do
    if s[3] > newest then newest = s[3] end
    if not covered(ctx, s) then kept[#kept + 1] = s end
  end
  if hard > 0 and #kept >= hard then
    error({err = 'ERR redquorum: ' .. key .. ' has ' .. #kept .. ' siblings (the limit is ' .. hard ..
      '): resolve them with RQ.GET and RQ.SET before writing'})
  end
  local counter = math.max(clock[actor] or 0, ctx[actor] or 0) + 1
  if ctx ~= clock then
    for a, c in pairs(ctx) do
      if (clock[a] or 0) < c then clock[a] = c end
    end
  end
  clock[actor] = counter
  -- never below what this replica holds, so resolution follows real-time order
  local ts = now_us
  if newest >= ts then ts = newest + 1 end
  kept[#kept + 1] = {actor, counter, ts, tomb, exp, value}
  return {store(key, clock, kept, grace, old), reply}
end

-- rq_merge key | grace_ms object... : sync each object into the stored one.
-- Returns 1 when the stored object changed, else 0.
local function merge(keys, args)
  local key = keys[1]
  local grace = tonumber(args[1])
  local old = redis.call('GET', key)
  local clock, sibs = decode(old)
  for i = 2, #args do
    local c2, s2 = decode(args[i])
    clock, sibs = sync(clock, sibs, c2, s2)
  end
  if store(key, clock, sibs, grace, old) == old then return 0 end
  return 1
end

-- Last-write-wins mode keeps one sibling: the highest (timestamp, actor).
local function newest(sibs)
  local best
  for _, s in ipairs(sibs) do
    if best == nil or s[3] > best[3] or (s[3] == best[3] and bytes_less(best[1], s[1])) then
      best = s
    end
  end
  return best
end

-- rq_lww key | actor ts_us grace_ms tombstone expire_at_ms value
-- One round trip per replica: keep the incoming sibling if it is newer than what is
-- here. Its dot is (actor, ts_us). Returns 1 when a live value was here before, else 0.
local function lww(keys, args)
  local key = keys[1]
  local actor, ts, grace = args[1], tonumber(args[2]), tonumber(args[3])
  local tomb, exp, value = tonumber(args[4]), tonumber(args[5]), args[6]
  local old = redis.call('GET', key)
  local clock, sibs = decode(old)
  local existed = 0
  if winner(sibs, math.floor(ts / 1000)) then existed = 1 end
  local best = newest(sibs)
  if best and (best[3] > ts or (best[3] == ts and not bytes_less(best[1], actor))) then
    return existed
  end
  if (clock[actor] or 0) < ts then clock[actor] = ts end
  store(key, clock, {{actor, ts, ts, tomb, exp, value}}, grace, old)
  return existed
end

-- rq_merge_lww key | grace_ms object... : like rq_merge, then keep only the newest sibling.
local function merge_lww(keys, args)
  local key = keys[1]
  local grace = tonumber(args[1])
  local old = redis.call('GET', key)
  local clock, sibs = decode(old)
  for i = 2, #args do
    local c2, s2 = decode(args[i])
    clock, sibs = sync(clock, sibs, c2, s2)
  end
  local best = newest(sibs)
  if best then sibs = {best} end
  if store(key, clock, sibs, grace, old) == old then return 0 end
  return 1
end

-- rq_inspect key : {stored bytes or false, PTTL}
local function inspect(keys, args)
  return {redis.call('GET', keys[1]), redis.call('PTTL', keys[1])}
end

-- rq_live_count now_ms | key... : for EXISTS/DBSIZE-like counts without shipping values
local function live_count(keys, args)
  local now_ms = tonumber(args[1])
  local n = 0
  for _, key in ipairs(keys) do
    local blob = redis.call('GET', key)
    if blob then
      local _, sibs = decode(blob)
      if count_live(sibs, now_ms) > 0 then n = n + 1 end
    end
  end
  return n
end

redis.register_function('rq_put', put)
redis.register_function('rq_merge', merge)
redis.register_function('rq_lww', lww)
redis.register_function('rq_merge_lww', merge_lww)
redis.register_function{function_name = 'rq_inspect', callback = inspect, flags = {'no-writes'}}
redis.register_function{function_name = 'rq_live_count', callback = live_count, flags = {'no-writes'}}
