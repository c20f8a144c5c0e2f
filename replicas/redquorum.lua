#!lua name=redquorum
--[[
The replica-side half of redquorum, loaded with FUNCTION LOAD REPLACE by a proxy that
connects and finds another version loaded (rq_library). All read-modify-write of stored
objects happens here, atomically, so two proxies writing the same replica cannot
interleave; and this is the only encoder of stored bytes, so equal objects are equal
bytes (proxy/clock.py has the theory).

Stored object (cmsgpack, arrays only, no maps: Lua table order is not deterministic):
  {1, {actor, counter, ...}, {{actor, counter, ts_us, tombstone(0/1), expire_at_ms, value}, ...}}
actors sorted by bytes (Lua's string < follows the locale), siblings by dot.
Numbers stay below 2^53 (Lua numbers are doubles).
]]

local FORMAT = 1

-- The sha1 of this file, put here by the proxy that loads it (proxy/server/links.py):
-- rq_library answers it, so a proxy reloads the library only when its own differs.
-- Loading it again would drop what the library keeps in memory (the digests' roots).
local LIBRARY_DIGEST = '@LIBRARY_DIGEST@'

-- Library functions as upvalues: a global read goes through the globals table's
-- metatable on every call. They cannot be read while the library loads (only the
-- registration API is visible then), so each entry point fills them on its first run.
local function library()  -- (declared before the locals below, so these are globals)
  return string.byte, string.format, table.sort, cmsgpack.pack, cmsgpack.unpack,
    math.floor, math.max, redis.call, type, pairs, ipairs, next, pcall, error, tonumber, tostring, unpack
end
local sbyte, sformat, tsort, mpack, munpack, floor, max, call
local type, pairs, ipairs, next, pcall, error, tonumber, tostring, unpack
local ready = false
local function init()
  sbyte, sformat, tsort, mpack, munpack, floor, max, call,
    type, pairs, ipairs, next, pcall, error, tonumber, tostring, unpack = library()
  ready = true
end

---------------------------------------------------------------------------
-- Anti-entropy digests
--[[
Every replica keeps, current through the very calls that store objects, digests of what
it holds, so that replicas are compared by a few hashes instead of by their data (Riak's
TicTac AAE; proxy/replication/antientropy.py runs the exchange). Key k lives in partition
p = crc32(k) & 4095 (the ring's partition, proxy/replication/ring.py) and in segment
s = (crc32(k) >> 12) & 63 of that partition. Its entry is the first 48 bits of
sha1(#k .. ':' .. k .. stored bytes), as 12 hex digits; a segment's digest is the XOR of
its keys' entries, a partition's root the XOR of its segments' digests, i.e. of all its
entries (LuaBitOp works on 32-bit ints: the 48 bits are two 24-bit chunks). A digest of
zero is no digest. Redis holds the entries, a hash per partition:
  __rq:aae:<g>:p:<p>   char(s) .. key -> the key's entry (a segment's keys listed without
                       a scan of the keyspace; fields from char(64) up are sums an older
                       layout kept, ignored)
  __rq:aae:state       hash: gen (the complete generation g), building (one being
                       rebuilt), cursor (its SCAN cursor), built_at (ms), drop/dcursor (an
                       old generation being deleted)
all under __rq:aae: (hidden from clients). A write stores its key's entry (one HSET). The
roots live in this library's memory: summed from a partition's hash the first time an
exchange asks for it after the library was loaded (or a new generation swapped in; at
most ROOTS_BUDGET entries per call), then kept current by every write to
that partition, which reads the entry it replaces (one HGET) and XORs old ^ new into the
root, so a round costs a lookup per partition. Segment digests are summed from the
partition's hash when an exchange asks for them, which it does only for partitions whose
roots differ. (The first layout kept the 64 segment sums and the root inside each
partition hash, current through every write: a read and a write of three fields and the
arithmetic on them per write, about a third of the replicas' CPU per SET. Roots summed
afresh for every round, tried next, were cheaper still per write but cost every round a
read of all the partitions written since the last one: the whole keyspace under a steady
write load. The proxy loads the library only where another version runs (rq_library),
so what it keeps in memory survives proxies connecting; a restarted server sums each
root once again.)

Changes made behind the proxy's back (DEL, FLUSHALL, eviction, Redis dropping a key at
its PXAT) do not pass here: rq_aae_rebuild builds a new generation from a SCAN of the
data in bounded steps while writes keep both generations current, then swaps it in. A
replica with no digest state at all (emptied, or restored from files older than the
digests) starts a rebuild at its first write; an empty one needs none; one where a few
random objects have no entry (digests deleted, keys written directly) starts one at once.
]]

local AAE = '__rq:aae:'
local AAE_STATE = '__rq:aae:state'
local AAE_SEGMENTS = 64
local AAE_PARTITIONS = 4096
local ROOTS_BUDGET = 20000  -- entries one rq_aae_roots call may sum (about 5 ms)
local aae_call, aae_byte, aae_sub, aae_format, aae_num, aae_ipairs, aae_str, aae_floor
local aae_char, aae_find
local bxor, band, rshift, bnot, sha1hex
local crc_table, key_prefixes
-- Texts a write would otherwise format each time (a number's text is a sprintf): key
-- lengths, and the names of the partition hashes of the last generations written.
local len_texts, hash_names, hash_gens = {}, {}, 0

local function aae_init()
  local g = _G  -- the globals themselves: this file's locals of the same names may be unset
  aae_call, aae_byte, aae_sub, aae_format, aae_num, aae_ipairs, aae_str, aae_floor =
    g.redis.call, g.string.byte, g.string.sub, g.string.format, g.tonumber, g.ipairs, g.tostring,
    g.math.floor
  aae_char, aae_find = g.string.char, g.string.find
  bxor, band, rshift, bnot, sha1hex = g.bit.bxor, g.bit.band, g.bit.rshift, g.bit.bnot, g.redis.sha1hex
  local t = {}
  for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
      if band(c, 1) == 1 then c = bxor(rshift(c, 1), 0xEDB88320) else c = rshift(c, 1) end
    end
    t[i] = c
  end
  key_prefixes = {}
  for s = 0, AAE_SEGMENTS - 1 do key_prefixes[s] = aae_char(s) end
  crc_table = t
end

-- zlib's crc32, the ring's partition hash
local function crc32(s)
  local crc, t, n = -1, crc_table, #s
  local i = 1
  while i + 3 <= n do  -- four bytes per string.byte call: the calls cost more than the table
    local a, b, c, d = aae_byte(s, i, i + 3)
    crc = bxor(rshift(crc, 8), t[band(bxor(crc, a), 255)])
    crc = bxor(rshift(crc, 8), t[band(bxor(crc, b), 255)])
    crc = bxor(rshift(crc, 8), t[band(bxor(crc, c), 255)])
    crc = bxor(rshift(crc, 8), t[band(bxor(crc, d), 255)])
    i = i + 4
  end
  while i <= n do
    crc = bxor(rshift(crc, 8), t[band(bxor(crc, aae_byte(s, i)), 255)])
    i = i + 1
  end
  return bnot(crc)
end

-- While rq_many runs an entry, the crc32 the proxy computed for the key it writes (the
-- proxy hashes every key for the ring anyway; in Lua crc32 costs about 0.13 µs a byte).
local placed_key, placed_crc

local function aae_place(key)
  local c
  if key == placed_key then c = placed_crc else c = crc32(key) end
  return band(c, AAE_PARTITIONS - 1), band(rshift(c, 12), AAE_SEGMENTS - 1)
end

-- Stored objects begin with their msgpack header: an array of three, then FORMAT (1).
-- Other strings (the replica's actor, the contexts' secret) are not digested.
local function is_object(blob)
  return blob and aae_sub(blob, 1, 2) == '\147\1'
end

-- True when this replica holds no object at all (a few bookkeeping keys at most: its
-- actor, the contexts' secret, hints): then empty digests are exact.
local function holds_no_objects()
  if aae_call('DBSIZE') > 16 then return false end
  local reply = aae_call('SCAN', '0', 'COUNT', 1000, 'TYPE', 'string')
  if reply[1] ~= '0' then return false end
  for _, key in aae_ipairs(reply[2]) do
    if aae_sub(key, 1, 9) ~= AAE and is_object(aae_call('GET', key)) then return false end
  end
  return true
end

-- The entry the hook last stored (false: a deletion, or nothing digested): the write
-- functions return it, so the proxy hands it to the other homes with the same bytes.
local last_entry = false

-- An entry a caller passes in (rq_replace): 12 lowercase hex digits, as aae_entry makes.
local function valid_entry(entry)
  return #entry == 12 and not aae_find(entry, '[^0-9a-f]')
end

local function aae_entry(key, blob)
  local n = #key
  local len = len_texts[n]
  if not len then
    len = aae_str(n)
    if n < 1024 then len_texts[n] = len end
  end
  return aae_sub(sha1hex(len .. ':' .. key .. blob), 1, 12)
end

-- a XOR b for digests as 12 hex digits (false: zero) -> digest, or false for zero
local function halves(digest)  -- its two 24-bit chunks (false: zero)
  if not digest then return 0, 0 end
  -- 48 bits are exact in a double; the split is arithmetic, not two more C calls each
  local v = aae_num(digest, 16)
  local lo = v % 16777216
  return (v - lo) / 16777216, lo
end

local function hex_of(hi, lo)  -- false for zero
  if hi == 0 and lo == 0 then return false end
  return aae_format('%06x%06x', hi, lo)
end


local function partition_hash(gen, p)
  local names = hash_names[gen]
  if not names then
    if hash_gens == 2 then hash_names, hash_gens = {}, 0 end  -- the complete one, one building
    names = {}
    hash_names[gen], hash_gens = names, hash_gens + 1
  end
  local name = names[p]  -- p: a number from aae_place, or a partition's text from a caller
  if not name then
    name = AAE .. gen .. ':p:' .. p
    names[p] = name
  end
  return name
end

-- The complete generation's roots, kept in this library's memory (Redis holds only the
-- entries): partition -> {hi, lo}, for the partitions an exchange asked about since the
-- library was loaded; the others are summed from their hash when asked. Every write to a
-- partition whose root is here XORs its old and new entries into it, so a root is summed
-- from its hash once per load of the library (a restart, another version), not once per
-- round. ``root_gen``/``root_built`` name the generation they belong to (its number and
-- built_at): another generation, or the same number after a flush, starts afresh.
local roots, root_gen, root_built = {}, false, false

local function roots_for(gen, built_at)
  if gen ~= root_gen or built_at ~= root_built then
    roots, root_gen, root_built = {}, gen, built_at
  end
  return roots
end

local function set_entry(hash, field, entry)
  if entry then
    aae_call('HSET', hash, field, entry)
  else
    aae_call('HDEL', hash, field)
  end
end

-- The XOR of a partition's entries per segment, {segment -> {hi, lo}}, of all of them,
-- {hi, lo} (its root), and how many fields it read.
local function partition_sums(gen, p)
  local flat = aae_call('HGETALL', partition_hash(gen, p))
  local segs, rhi, rlo = {}, 0, 0
  for j = 1, #flat, 2 do
    local s = aae_byte(flat[j], 1)
    if s < AAE_SEGMENTS then  -- a key's entry (fields from 64 up: sums an older layout kept)
      local hi, lo = halves(flat[j + 1])
      local seg = segs[s]
      if seg then
        seg[1], seg[2] = bxor(seg[1], hi), bxor(seg[2], lo)
      else
        segs[s] = {hi, lo}
      end
      rhi, rlo = bxor(rhi, hi), bxor(rlo, lo)
    end
  end
  return segs, {rhi, rlo}, #flat / 2
end

local function now_ms()
  local t = aae_call('TIME')
  return aae_num(t[1]) * 1000 + aae_floor(aae_num(t[2]) / 1000)
end

-- The digest state {gen, building} while rq_many runs (read by its first write, then
-- kept: nothing else changes it within one call); nil outside rq_many.
local batch_state

-- The complete generation (false: none), its built_at, and the one being rebuilt
-- (false: none); starts digests where there are none.
local function digest_state()
  local st = batch_state
  if not st or st == true then
    st = aae_call('HMGET', AAE_STATE, 'gen', 'built_at', 'building')
    if not st[1] and not st[3] then
      if holds_no_objects() then  -- nothing held yet: the empty digests are exact
        st = {'1', aae_str(now_ms()), false}
        aae_call('HSET', AAE_STATE, 'gen', st[1], 'built_at', st[2])
      else  -- data without digests: rq_aae_rebuild fills generation 1 from a scan
        st[3] = '1'
        aae_call('HSET', AAE_STATE, 'building', '1', 'cursor', '0')
      end
    end
    if batch_state then batch_state = st end
  end
  return st[1], st[2], st[3]
end

-- The hook: called just before ``key`` is stored as ``blob`` (false: deleted).
-- ``entry``: blob's entry when the caller has it already (another home computed it).
local function aae_store(key, blob, entry)
  if not crc_table then aae_init() end
  last_entry = false
  if aae_byte(key, 1) == 95 and aae_sub(key, 1, 9) == AAE then return end  -- 95: '_'
  local gen, built, building = digest_state()
  local p, s = aae_place(key)
  if blob then entry = entry or aae_entry(key, blob) else entry = false end
  last_entry = entry
  local field = key_prefixes[s] .. key
  if gen then
    local hash = partition_hash(gen, p)
    local root = gen == root_gen and built == root_built and roots[p]
    if root then  -- kept in memory: XOR the entry replaced out of it, the new one in
      local ohi, olo = halves(aae_call('HGET', hash, field))
      local ehi, elo = halves(entry)
      root[1], root[2] = bxor(root[1], bxor(ohi, ehi)), bxor(root[2], bxor(olo, elo))
    end
    set_entry(hash, field, entry)
  end
  if building then set_entry(partition_hash(building, p), field, entry) end
end

-- rq_aae_roots first count [budget] : {1 when the digests are complete else 0,
-- {partition, root, ...} for partitions first .. first + count - 1, 1 while a rebuild runs
-- else 0, built_at}. ``budget``: how many entries this call may sum for roots not in
-- memory yet (default ROOTS_BUDGET); past it the answer is 0, as for incomplete digests.
local function aae_roots(keys, args)
  if not crc_table then aae_init() end
  local st = aae_call('HMGET', AAE_STATE, 'gen', 'building', 'built_at')
  local building = 0
  if st[2] then building = 1 end
  if not st[1] then
    if holds_no_objects() then return {1, {}, 0, 0} end  -- nothing held: exact
    return {0, {}, building, 0}
  end
  local first = aae_num(args[1]) or 0
  local last = first + (aae_num(args[2]) or AAE_PARTITIONS) - 1
  if last > AAE_PARTITIONS - 1 then last = AAE_PARTITIONS - 1 end
  local budget = aae_num(args[3]) or ROOTS_BUDGET
  local gen, held, out, spent = st[1], roots_for(st[1], st[3]), {}, 0
  for p = first, last do
    local root = held[p]
    if not root then
      -- Summed once per load of the library; bounded per call, because the replica
      -- answers nothing else meanwhile: past the budget, it sits this round out (0) and
      -- the next calls go on from the roots summed so far.
      if spent >= budget then return {0, {}, building, aae_num(st[3]) or 0} end
      local _, n
      _, root, n = partition_sums(gen, p)
      held[p] = root
      spent = spent + n
    end
    local hex = hex_of(root[1], root[2])
    if hex then
      out[#out + 1] = aae_str(p)
      out[#out + 1] = hex
    end
  end
  return {1, out, building, aae_num(st[3]) or 0}
end

-- rq_aae_segments partition : {segment, digest, ...} (zero digests left out), summed from
-- the partition's entries: an exchange asks only for partitions whose roots differ.
local function aae_segments(keys, args)
  if not crc_table then aae_init() end
  local gen = aae_call('HGET', AAE_STATE, 'gen')
  local out = {}
  if not gen then return out end
  local segs = partition_sums(gen, aae_num(args[1]))
  for s = 0, AAE_SEGMENTS - 1 do
    local seg = segs[s]
    local digest = seg and hex_of(seg[1], seg[2])
    if digest then
      out[#out + 1] = aae_str(s)
      out[#out + 1] = digest
    end
  end
  return out
end

-- rq_aae_keys partition segment [partition segment ...] : per segment {key, entry, ...}
local function aae_keys(keys, args)
  if not crc_table then aae_init() end
  local gen = aae_call('HGET', AAE_STATE, 'gen')
  local out, fields = {}, {}
  for i = 1, #args, 2 do
    local listed = {}
    if gen then
      local p, s = args[i], aae_num(args[i + 1])
      fields[p] = fields[p] or aae_call('HGETALL', partition_hash(gen, p))
      local flat = fields[p]
      for j = 1, #flat, 2 do
        if aae_byte(flat[j], 1) == s then
          listed[#listed + 1] = aae_sub(flat[j], 2)
          listed[#listed + 1] = flat[j + 1]
        end
      end
    end
    out[#out + 1] = listed
  end
  return out
end

-- rq_aae_objects key... : the stored bytes of each key (nil: none), one GET each
local function aae_objects(keys, args)
  if not crc_table then aae_init() end
  local out = {}
  for i = 1, #keys do out[i] = aae_call('GET', keys[i]) end
  return out
end

-- rq_aae_refresh key... : each key's entry recomputed from what is stored (a key the
-- exchange found gone, dropped at its PXAT, leaves the digests this way).
local function aae_refresh(keys, args)
  if not crc_table then aae_init() end
  for i = 1, #keys do
    local key = keys[i]
    local t = aae_call('TYPE', key)['ok']
    if t == 'string' then
      local blob = aae_call('GET', key)
      aae_store(key, is_object(blob) and blob)
    elseif t == 'none' then
      aae_store(key, false)
    end
  end
  return #keys
end

-- False when a few random objects of this replica include one the digests of generation
-- gen do not list: they were deleted, or keys were written around the function library.
local function spot_check(gen)
  for _ = 1, 8 do
    local key = aae_call('RANDOMKEY')
    if not key then return true end
    if aae_sub(key, 1, 9) ~= AAE and aae_call('TYPE', key)['ok'] == 'string'
        and is_object(aae_call('GET', key)) then
      local p, s = aae_place(key)
      return aae_call('HEXISTS', partition_hash(gen, p), aae_char(s) .. key) == 1
    end
  end
  return true
end

-- rq_aae_release lease owner : ends a partition's repair lease if ``owner`` still holds it
local function aae_release(keys, args)
  if not crc_table then aae_init() end
  if aae_call('GET', keys[1]) == args[1] then return aae_call('DEL', keys[1]) end
  return 0
end

-- rq_aae_rebuild now_ms every_ms count : one bounded step of the digests' rebuild.
-- Starts a new generation when there is none, when a spot check finds an object the
-- complete one does not list, or when it is older than every_ms (0: never for age;
-- negative: now); SCANs about ``count`` keys into it; swaps it in when the scan is done,
-- then deletes the old generation in later steps.
-- Returns {phase ('idle'|'building'|'built'|'dropping'), keys visited}.
local function aae_rebuild(keys, args)
  if not crc_table then aae_init() end
  local now, every, count = aae_num(args[1]), aae_num(args[2]), aae_num(args[3])
  local st = aae_call('HMGET', AAE_STATE, 'gen', 'building', 'cursor', 'built_at', 'drop', 'dcursor')
  local gen, building, cursor, built_at, drop = st[1], st[2], st[3], aae_num(st[4]), st[5]
  if drop then
    local reply = aae_call('SCAN', st[6] or '0', 'MATCH', AAE .. drop .. ':*', 'COUNT', count)
    for _, k in aae_ipairs(reply[2]) do aae_call('UNLINK', k) end
    if reply[1] == '0' then
      aae_call('HDEL', AAE_STATE, 'drop', 'dcursor')
    else
      aae_call('HSET', AAE_STATE, 'dcursor', reply[1])
    end
    return {'dropping', #reply[2]}
  end
  if not building then
    local due = not gen or every < 0 or (every > 0 and now - (built_at or 0) >= every)
      or not spot_check(gen)
    if not due then return {'idle', 0} end
    building = aae_str((aae_num(gen) or 0) + 1)
    cursor = '0'
    aae_call('HSET', AAE_STATE, 'building', building, 'cursor', cursor)
  end
  local reply = aae_call('SCAN', cursor or '0', 'COUNT', count, 'TYPE', 'string')
  for _, key in aae_ipairs(reply[2]) do
    if aae_sub(key, 1, 9) ~= AAE then
      local blob = aae_call('GET', key)
      local p, s = aae_place(key)
      local entry = is_object(blob) and aae_entry(key, blob)
      set_entry(partition_hash(building, p), key_prefixes[s] .. key, entry)
    end
  end
  if reply[1] ~= '0' then
    aae_call('HSET', AAE_STATE, 'cursor', reply[1])
    return {'building', #reply[2]}
  end
  aae_call('HSET', AAE_STATE, 'gen', building, 'built_at', now)
  aae_call('HDEL', AAE_STATE, 'building', 'cursor')
  if gen then aae_call('HSET', AAE_STATE, 'drop', gen, 'dcursor', '0') end
  return {'built', #reply[2]}
end

-- (end of the anti-entropy digests)

local function bytes_less(a, b)
  local la, lb = #a, #b
  local n = la
  if lb < n then n = lb end
  for i = 1, n do
    local x, y = sbyte(a, i), sbyte(b, i)
    if x ~= y then return x < y end
  end
  return la < lb
end

local function dot_less(x, y)
  if x[1] ~= y[1] then return bytes_less(x[1], y[1]) end
  return x[2] < y[2]
end

local function decode_clock(flat)
  if #flat == 2 then return {[flat[1]] = flat[2]} end  -- one actor: sized at once
  local clock = {}
  for i = 1, #flat, 2 do clock[flat[i]] = flat[i + 1] end
  return clock
end

local function decode(blob)
  if not blob then return {}, {} end
  local ok, o = pcall(munpack, blob)
  if not ok or type(o) ~= 'table' or o[1] ~= FORMAT then
    error({err = 'ERR redquorum: the key holds a value that redquorum did not write'})
  end
  return decode_clock(o[2]), o[3]
end

local function encode(clock, sibs)
  local flat
  local first = next(clock)
  if first ~= nil and next(clock, first) == nil then  -- one actor: nothing to sort
    flat = {first, clock[first]}
  else
    local actors = {}
    for a in pairs(clock) do actors[#actors + 1] = a end
    tsort(actors, bytes_less)
    flat = {}
    for i = 1, #actors do
      flat[2 * i - 1] = actors[i]
      flat[2 * i] = clock[actors[i]]
    end
  end
  if #sibs > 1 then tsort(sibs, dot_less) end
  return mpack({FORMAT, flat, sibs})
end

-- When every sibling is dead (tombstone or expired), the key itself expires once the
-- newest death is older than the grace period: until then it stops stale replicas from
-- bringing the value back through repair. A value written with an expiry already past
-- (SET ... PXAT <past>) died when it was written, not at that expiry: it is kept for the
-- grace period from the write like a tombstone. Returns the expiry set (ms), or 0.
local function write_blob(key, blob, sibs, grace_ms)
  local last = 0
  for _, s in ipairs(sibs) do
    local death
    if s[4] == 1 then
      death = floor(s[3] / 1000)
    elseif s[5] > 0 then
      death = max(s[5], floor(s[3] / 1000))
    else
      last = nil
      break
    end
    if death > last then last = death end
  end
  -- Redis reads a Lua number argument as "%.17g": past 1e17 it is no longer an integer
  -- (expiries that far ahead, which Redis accepts, keep no Redis TTL: they are alive anyway)
  aae_store(key, blob)
  if last then
    -- grace_ms comes as the argument's text: only a dead object needs it as a number
    local grace_ms = tonumber(grace_ms)
    if last + grace_ms < 1e17 then
      call('SET', key, blob, 'PXAT', last + grace_ms)
      return last + grace_ms
    end
  end
  call('SET', key, blob)
  return 0
end

-- Returns the stored bytes and their expiry (0: none, or nothing was written).
local function store(key, clock, sibs, grace_ms, old)
  if #sibs == 0 then return old, 0 end
  local blob = encode(clock, sibs)
  local pxat = 0
  if blob ~= old then pxat = write_blob(key, blob, sibs, grace_ms) end
  return blob, pxat
end

local function covered(clock, s)
  local c = clock[s[1]]
  return c ~= nil and c >= s[2]
end

local function dot_key(s)
  -- %.0f, not tostring: Lua prints numbers with %.14g, which merges large counters
  return s[1] .. '\0' .. sformat('%.0f', s[2])
end

-- True when dot_key(s) == dot_key(t) exactly when s[1] == t[1] and s[2] == t[2], for
-- any t with a plain dot too.
local function plain_dot(s)
  local c = s[2]
  return type(s[1]) == 'string' and type(c) == 'number' and c >= 1 and c % 1 == 0
end

-- The last-write-wins order of two siblings: (timestamp, actor), then the rest of the
-- sibling, so exact ties resolve the same way on every replica (clock.lww_order).
local function lww_less(x, y)
  if x[3] ~= y[3] then return x[3] < y[3] end
  if x[1] ~= y[1] then return bytes_less(x[1], y[1]) end
  if x[2] ~= y[2] then return x[2] < y[2] end
  if x[4] ~= y[4] then return x[4] < y[4] end
  if x[5] ~= y[5] then return x[5] < y[5] end
  if x[6] ~= y[6] then return bytes_less(x[6], y[6]) end
  return false
end

local function sync(c1, s1, c2, s2)
  local d1, d2 = {}, {}
  for _, s in ipairs(s1) do d1[dot_key(s)] = true end
  for _, s in ipairs(s2) do d2[dot_key(s)] = s end
  local out = {}
  for _, s in ipairs(s1) do
    local theirs = d2[dot_key(s)]
    if theirs then
      -- a dot minted twice with other content (a replica lost a key without losing its
      -- actor): every replica keeps the same one of the two, so they converge
      if theirs ~= s and lww_less(s, theirs) then s = theirs end
      out[#out + 1] = s
    elseif not covered(c2, s) then
      out[#out + 1] = s
    end
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

-- The sibling a plain GET answers: the newest by (timestamp, actor) among all of them,
-- tombstones and expired values included, or nil when that one is dead. A DEL or an
-- expiry newer than a concurrent value wins over it, as it would in Redis, where the
-- later command wins (timestamps follow real time: see put_on).
local function winner(sibs, now_ms)
  local best
  for _, s in ipairs(sibs) do
    if best == nil or s[3] > best[3] or (s[3] == best[3] and bytes_less(best[1], s[1])) then
      best = s
    end
  end
  if best == nil or best[4] == 1 or (best[5] ~= 0 and best[5] <= now_ms) then return nil end
  return best
end

---------------------------------------------------------------------------
-- Actor epochs. A replica mints dots (actor, counter) one past what its stored clock
-- shows, so a replica that lost data (restarted empty, from an older snapshot, with the
-- tail of its AOF gone, flushed behind the proxy's back) would mint again dots the other
-- replicas hold for older values, and they would drop its new writes as already seen.
-- So each redis-server process writes under an actor of its own, `<replica id>~<6 hex>`
-- (Riak's vnode epochs): rq_actor, which every proxy link calls when it connects, starts
-- a new one when the process is new (INFO's run_id changed), and a write that finds the
-- actor key gone (a flush) starts one too. Clocks gain an entry per replica restart.

local ACTOR_KEY, ACTOR_RUN_KEY = '__rq:actor', '__rq:actor:run'

local function run_id()
  return string.match(call('INFO', 'server'), 'run_id:(%x+)')
end

local function new_actor(replica, run)
  local t = call('TIME')
  local actor = replica .. '~' .. string.sub(redis.sha1hex(run .. ':' .. t[1] .. ':' .. t[2]), 1, 6)
  call('SET', ACTOR_KEY, actor)
  call('SET', ACTOR_RUN_KEY, run)
  return actor
end

-- The actor this process mints dots under; `replica` (the proxy's name for this
-- replica) prefixes a new one.
local batch_actor  -- while rq_many runs: the actor its first write found (false: none yet)

local function own_actor(replica)
  if batch_actor then return batch_actor end
  local actor = call('GET', ACTOR_KEY) or new_actor(replica, run_id())
  if batch_actor == false then batch_actor = actor end
  return actor
end

-- rq_actor replica_id : the actor of this redis-server process, started anew when the
-- process is (so a restart never reuses the counters of the actor it had before).
local function actor_of(keys, args)
  if not ready then init() end
  local run = run_id()
  local actor = call('GET', ACTOR_KEY)
  if actor and call('GET', ACTOR_RUN_KEY) == run then return actor end
  return new_actor(args[1], run)
end

---------------------------------------------------------------------------
-- Operations: each gets the current winner (or nil), now_ms and its arguments, and returns
-- either a new sibling (value, expire_at, tombstone) and a reply, or nil and a reply
-- (nothing to write). Errors are raised with Redis's own texts.

local MAX_STRING = 512 * 1024 * 1024  -- Redis's proto-max-bulk-len default
local TOO_BIG = 'ERR string exceeds maximum allowed size (proto-max-bulk-len)'
local INT64_MAX = '9223372036854775807'
local INT64_MIN_ABS = '9223372036854775808'

-- Integers are handled as decimal text: Lua numbers are doubles, Redis's are int64.
local function cmp_digits(a, b)
  if #a ~= #b then
    if #a < #b then return -1 end
    return 1
  end
  for i = 1, #a do
    local x, y = sbyte(a, i), sbyte(b, i)
    if x ~= y then
      if x < y then return -1 end
      return 1
    end
  end
  return 0
end

-- Redis's string2ll: no spaces, no '+', no leading zeros, within int64.
-- Returns sign (1/-1) and the digits, or nil.
local function int_parts(s)
  if s == nil or #s == 0 or #s > 20 then return nil end
  if s == '0' then return 1, '0' end
  local neg, digits = string.match(s, '^(%-?)([1-9]%d*)$')
  if not digits then return nil end
  local limit = INT64_MAX
  if neg == '-' then limit = INT64_MIN_ABS end
  if cmp_digits(digits, limit) > 0 then return nil end
  if neg == '-' then return -1, digits end
  return 1, digits
end

local function add_digits(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + sbyte(a, i) - 48; i = i - 1 end
    if j > 0 then d = d + sbyte(b, j) - 48; j = j - 1 end
    if d >= 10 then carry, d = 1, d - 10 else carry = 0 end
    out[#out + 1] = string.char(48 + d)
  end
  return string.reverse(table.concat(out))
end

local function sub_digits(a, b)  -- a >= b
  local out, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = sbyte(a, i) - 48 - borrow
    if j > 0 then d = d - (sbyte(b, j) - 48); j = j - 1 end
    if d < 0 then d, borrow = d + 10, 1 else borrow = 0 end
    out[#out + 1] = string.char(48 + d)
    i = i - 1
  end
  local s = string.gsub(string.reverse(table.concat(out)), '^0+', '')
  if s == '' then return '0' end
  return s
end

-- The exact sum of two int64 texts, or nil when it leaves int64.
local function int_add(x, y)
  local sx, mx = int_parts(x)
  local sy, my = int_parts(y)
  local sign, mag
  if sx == sy then
    sign, mag = sx, add_digits(mx, my)
  else
    local c = cmp_digits(mx, my)
    if c == 0 then return '0' end
    if c > 0 then sign, mag = sx, sub_digits(mx, my) else sign, mag = sy, sub_digits(my, mx) end
  end
  local limit = INT64_MAX
  if sign < 0 then limit = INT64_MIN_ABS end
  if cmp_digits(mag, limit) > 0 then return nil end
  if sign < 0 then return '-' .. mag end
  return mag
end

local OPS = {}

-- set value expire_mode(''|at|keep) expire_at cond(''|NX|XX) get(0|1)
OPS.set = function(cur, now_ms, value, mode, at, cond, get)
  at = tonumber(at)
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
OPS.del = function(cur, now_ms)
  if cur then return '', 0, 1, 1 end
  return '', 0, 1, 0
end

-- rqset: a context-carrying write from RQ.SET (expire_at absolute ms or 0)
OPS.rqset = function(cur, now_ms, value, at)
  return value, tonumber(at), 0, 1
end

-- incrby by : exact int64 arithmetic; the reply is the new value as decimal text
OPS.incrby = function(cur, now_ms, by)
  local n, exp = '0', 0
  if cur then
    n, exp = cur[6], cur[5]
    if int_parts(n) == nil then error({err = 'ERR value is not an integer or out of range'}) end
  end
  if int_parts(by) == nil then error({err = 'ERR value is not an integer or out of range'}) end
  local r = int_add(n, by)
  if r == nil then error({err = 'ERR increment or decrement would overflow'}) end
  return r, exp, 0, r
end

OPS.append = function(cur, now_ms, piece)
  local v, exp = '', 0
  if cur then v, exp = cur[6], cur[5] end
  if #v + #piece > MAX_STRING then error({err = TOO_BIG}) end
  v = v .. piece
  return v, exp, 0, #v
end

-- setrange offset value : Redis's SETRANGE (zero padding); the reply is the new length
OPS.setrange = function(cur, now_ms, offset, piece)
  offset = tonumber(offset)
  local v, exp = '', 0
  if cur then v, exp = cur[6], cur[5] end
  if #piece == 0 then return nil, #v end
  if offset + #piece > MAX_STRING then error({err = TOO_BIG}) end
  if #v < offset then v = v .. string.rep('\0', offset - #v) end
  v = string.sub(v, 1, offset) .. piece .. string.sub(v, offset + #piece + 1)
  return v, exp, 0, #v
end

-- setbit offset on : Redis's SETBIT (zero padding up to the bit's byte); the reply is the
-- bit's previous value. Offsets stay below 2^32, exact in a double.
OPS.setbit = function(cur, now_ms, offset, on)
  offset, on = tonumber(offset), tonumber(on)
  local v, exp = '', 0
  if cur then v, exp = cur[6], cur[5] end
  local byte = floor(offset / 8)
  local weight = 2 ^ (7 - offset % 8)
  local grown = #v <= byte
  if grown then v = v .. string.rep('\0', byte + 1 - #v) end
  local old = sbyte(v, byte + 1)
  local was = floor(old / weight) % 2
  if was == on and not grown then return nil, was end
  v = string.sub(v, 1, byte) .. string.char(old + (on - was) * weight) .. string.sub(v, byte + 2)
  return v, exp, 0, was
end

-- getdel: a tombstone if there is a value, answering it
OPS.getdel = function(cur, now_ms)
  if cur then return '', 0, 1, cur[6] end
  return nil, false
end

-- getex mode(''|at|persist) at error : the value, with a new expiry. Redis answers nil
-- for a missing key before it looks at the expiry, so a bad expiry comes as `error`.
OPS.getex = function(cur, now_ms, mode, at, err)
  if not cur then return nil, false end
  if err ~= '' then error({err = err}) end
  at = tonumber(at)
  if mode == 'persist' then
    if cur[5] == 0 then return nil, cur[6] end
    return cur[6], 0, 0, cur[6]
  end
  if mode ~= 'at' then return nil, cur[6] end
  if at <= now_ms then return '', 0, 1, cur[6] end
  return cur[6], at, 0, cur[6]
end

-- expire: new absolute expiry (ms; 0 = persist) for the current value, if any.
-- a = {mode('at'|'persist'), at, conditions}: conditions lists any of NX,XX,GT,LT (Redis
-- checks each one given); reply 1 when changed else 0
OPS.expire = function(cur, now_ms, mode, at, cond)
  if not cur then return nil, 0 end
  at, cond = tonumber(at), cond or ''
  local exp = cur[5]
  if mode == 'persist' then
    if exp == 0 then return nil, 0 end
    return cur[6], 0, 0, 1
  end
  local function has(flag) return string.find(cond, flag, 1, true) ~= nil end
  -- Redis treats "no expiry" as infinite for GT/LT
  if has('NX') and exp ~= 0 then return nil, 0 end
  if has('XX') and exp == 0 then return nil, 0 end
  if has('GT') and (exp == 0 or at <= exp) then return nil, 0 end
  if has('LT') and exp ~= 0 and at >= exp then return nil, 0 end
  if at <= now_ms then return '', 0, 1, 1 end
  return cur[6], at, 0, 1
end

-- cas expect(peek|none|dot) actor counter value : compare-and-set on the current winner,
-- for updates the proxy computes itself (INCRBYFLOAT's long-double arithmetic). Writes
-- `value` (keeping the expiry) only when the winner is still the one the proxy saw;
-- else answers {'retry', value, actor, counter} (or {'retry'} for no value) to try again.
OPS.cas = function(cur, now_ms, expect, actor, counter, value)
  local same
  if expect == 'none' then
    same = cur == nil
  elseif expect == 'dot' then
    same = cur ~= nil and cur[1] == actor and cur[2] == tonumber(counter)
  else
    same = false
  end
  if not same then
    if cur then return nil, {'retry', cur[6], cur[1], sformat('%d', cur[2])} end
    return nil, {'retry'}
  end
  local exp = 0
  if cur then exp = cur[5] end
  return value, exp, 0, {'ok', value}
end

---------------------------------------------------------------------------
-- Entry points

-- rq_put key | actor now_us context grace_ms sibling_hard_limit op op-args...
-- context: '' (saw nothing), '*' (everything held here), or a msgpack clock.
-- Returns {false, op reply} when nothing was written, else {new object bytes, op reply,
-- the bytes held before (false: none), the new object's expiry in ms (0: none), its
-- digest entry (false: none computed)}: what rq_replace needs to store the new object
-- on the other homes without decoding it or hashing it again.
local NO_CONTEXT = {}  -- the context '': read, never written

local function put_on(key, old, clock, sibs, args)
  -- grace_ms stays text: write_blob converts it when it needs it
  local actor, now_us, ctx_arg = args[1], tonumber(args[2]), args[3]
  local grace, hard, op = args[4], tonumber(args[5]), OPS[args[6]]
  if op == nil then error({err = 'ERR redquorum: unknown operation ' .. tostring(args[6])}) end
  local now_ms = floor(now_us / 1000)
  local value, exp, tomb, reply = op(winner(sibs, now_ms), now_ms, unpack(args, 7))
  if value == nil then return {false, exp} end

  local ctx
  if ctx_arg == '*' then
    ctx = clock
  elseif ctx_arg == '' then
    ctx = NO_CONTEXT
  else
    ctx = decode_clock(munpack(ctx_arg))
  end
  local kept, newest = {}, 0
  local i, s = 1, sibs[1]
  while s ~= nil do  -- ipairs(sibs) without its calls (winner has checked sibs is a table)
    if s[3] > newest then newest = s[3] end
    local c = ctx[s[1]]  -- covered(ctx, s), inline
    if c == nil or not (c >= s[2]) then kept[#kept + 1] = s end
    i = i + 1
    s = sibs[i]
  end
  if hard > 0 and #kept >= hard then
    error({err = 'ERR redquorum: ' .. key .. ' has ' .. #kept .. ' siblings (the limit is ' .. hard ..
      '): resolve them with RQ.GET and RQ.SET before writing'})
  end
  local counter = max(clock[actor] or 0, ctx[actor] or 0) + 1
  if counter > 9007199254740991 then  -- a double cannot count past 2^53: dots would repeat
    error({err = 'ERR redquorum: version counter of ' .. actor .. ' would pass 2^53'})
  end
  if ctx ~= clock and ctx ~= NO_CONTEXT then
    for a, c in pairs(ctx) do
      if (clock[a] or 0) < c then clock[a] = c end
    end
  end
  clock[actor] = counter
  -- never below what this replica holds, so resolution follows real-time order
  local ts = now_us
  if newest >= ts then ts = newest + 1 end
  kept[#kept + 1] = {actor, counter, ts, tomb, exp, value}
  local blob, pxat = store(key, clock, kept, grace, old)
  return {blob, reply, old or false, pxat, blob ~= old and last_entry}
end

local function put(keys, args)
  if not ready then init() end
  args[1] = own_actor(args[1])
  local old = call('GET', keys[1])
  local clock, sibs = decode(old)
  return put_on(keys[1], old, clock, sibs, args)
end

-- rq_set key | actor now_us grace_ms sibling_hard_limit value expire_at_ms : the plain
-- SET (no NX/XX, GET or KEEPTTL), the most common write. The same result as rq_put with context '*' and op
-- set (tests/test_lua_parity.py holds them to it), without the general path's argument
-- unpacking, operation dispatch and context handling: with context '*' every stored
-- sibling is covered, so the new object is the clock plus the new dot, and one sibling.
local function set(keys, args)
  if not ready then init() end
  local key = keys[1]
  args[1] = own_actor(args[1])
  local old = call('GET', key)
  local clock, sibs = decode(old)
  local newest = 0
  local i, s = 1, sibs[1]
  while s ~= nil do
    local c = clock[s[1]]
    if c == nil or not (c >= s[2]) then  -- a sibling the clock does not cover: general path
      local mode = 'at'
      if args[6] == '0' then mode = '' end
      return put_on(key, old, clock, sibs,
        {args[1], args[2], '*', args[3], args[4], 'set', args[5], mode, args[6], '', '0'})
    end
    if s[3] > newest then newest = s[3] end
    i = i + 1
    s = sibs[i]
  end
  local actor = args[1]
  local counter = (clock[actor] or 0) + 1
  if counter > 9007199254740991 then
    error({err = 'ERR redquorum: version counter of ' .. actor .. ' would pass 2^53'})
  end
  clock[actor] = counter
  local ts = tonumber(args[2])
  if newest >= ts then ts = newest + 1 end
  local blob, pxat = store(key, clock, {{actor, counter, ts, 0, tonumber(args[6]), args[5]}},
    args[3], old)
  return {blob, false, old or false, pxat, blob ~= old and last_entry}
end

-- rq_put_synced key | count object... actor now_us context ... (as rq_put)
-- Read-modify-write operations first sync what a quorum read found on the replicas, so
-- a coordinator that missed the latest acknowledged write never applies an INCR (say)
-- to an older value.
local function put_synced(keys, args)
  if not ready then init() end
  local count = tonumber(args[1])
  args[count + 2] = own_actor(args[count + 2])
  local old = call('GET', keys[1])
  local clock, sibs = decode(old)
  for i = 2, count + 1 do
    local c2, s2 = decode(args[i])
    clock, sibs = sync(clock, sibs, c2, s2)
  end
  local rest = {}
  for i = count + 2, #args do rest[#rest + 1] = args[i] end
  return put_on(keys[1], old, clock, sibs, rest)
end

-- rq_merge key | grace_ms object... : sync each object into the stored one.
-- Returns 1 when the stored object changed, else 0.
-- True when sync(local, incoming) is exactly the incoming object: its clock covers
-- the local clock, and none of its siblings is one the local side saw and dropped.
local function supersedes(c2, s2, c1, s1)
  for a, c in next, c1 do
    if (c2[a] or 0) < c then return false end
  end
  -- One stored sibling with a plain dot (the common case): compare dots directly instead
  -- of building dot_key strings. dot_key is injective, and for a string actor and a
  -- positive integral counter equal keys are exactly equal actors and counters.
  if type(s1) == 'table' and type(s2) == 'table' then
    local m = s1[1]
    if m ~= nil and s1[2] == nil and type(m) == 'table' and plain_dot(m) then
      local ma, mc = m[1], m[2]
      local i, s = 1, s2[1]
      while s ~= nil do  -- ipairs(s2), without its calls
        local a, c = s[1], s[2]
        local same
        if a == ma and c == mc then
          same = true
        elseif type(c) == 'number' and c >= 1 and c % 1 == 0 and (a == ma or type(a) == 'string') then
          same = false  -- a plain dot too (a == ma: a string), and another one
        else
          same = dot_key(s) == dot_key(m)
        end
        if not same then
          if covered(c1, s) then return false end
        elseif m[3] ~= s[3] or m[4] ~= s[4] or m[5] ~= s[5] or m[6] ~= s[6] then
          return false  -- a reused dot (a replica lost writes): let sync decide, as always
        end
        i = i + 1
        s = s2[i]
      end
      return true
    end
  end
  local d1 = {}
  for _, s in ipairs(s1) do d1[dot_key(s)] = s end
  for _, s in ipairs(s2) do
    local mine = d1[dot_key(s)]
    if mine == nil then
      if covered(c1, s) then return false end
    elseif mine[3] ~= s[3] or mine[4] ~= s[4] or mine[5] ~= s[5] or mine[6] ~= s[6] then
      return false  -- a reused dot (a replica lost writes): let sync decide, as always
    end
  end
  return true
end

-- The stored object synced with every object in args[2..].
local function sync_args(old, args)
  local clock, sibs = decode(old)
  for i = 2, #args do
    local c2, s2 = decode(args[i])
    clock, sibs = sync(clock, sibs, c2, s2)
  end
  return clock, sibs
end

-- True when ``s2`` holds a sibling under a dot ``s1`` holds with other content: the dot
-- was minted twice (a replica that lost data, before actor epochs). Not an ack.
local function dot_conflict(s1, s2)
  local d1 = {}
  for _, s in ipairs(s1) do d1[dot_key(s)] = s end
  for _, s in ipairs(s2) do
    local mine = d1[dot_key(s)]
    if mine ~= nil and (mine[3] ~= s[3] or mine[4] ~= s[4] or mine[5] ~= s[5] or mine[6] ~= s[6]) then
      return true
    end
  end
  return false
end

-- ``fresh``: the object is a write the coordinator just made (rq_replace), whose new dot
-- no replica can hold yet; one that does holds another write under it, and storing
-- nothing must not be answered as an ack.
local function merge(keys, args, fresh)
  if not ready then init() end
  local key = keys[1]
  local grace = args[1]  -- write_blob converts it when it needs it
  local old = call('GET', key)
  -- The common case, one newer object (a write's fan-out, a repair): its bytes are
  -- already canonical, so store them as they are instead of re-encoding.
  if #args == 2 then
    local blob = args[2]
    if blob == old then return 0 end
    local c2, s2 = decode(blob)
    if not old then
      write_blob(key, blob, s2, grace)
      return 1
    end
    local c1, s1 = decode(old)
    if supersedes(c2, s2, c1, s1) then
      write_blob(key, blob, s2, grace)
      return 1
    end
    if fresh and dot_conflict(s1, s2) then
      error({err = 'ERR redquorum: dot conflict: the replica holds another write under the new dot'})
    end
    local clock, sibs = sync(c1, s1, c2, s2)
    if store(key, clock, sibs, grace, old) == old then return 0 end
    return 1
  end
  local clock, sibs = sync_args(old, args)
  if store(key, clock, sibs, grace, old) == old then return 0 end
  return 1
end

-- The digest entry a fan-out carries (rq_replace's optional last argument: what the
-- coordinator's hook computed for the same bytes), or nil to compute it here.
local function carried_entry(entry)
  if entry == nil or entry == '' then return nil end
  if not crc_table then aae_init() end
  if not valid_entry(entry) then
    error({err = 'ERR redquorum: malformed digest entry (12 lowercase hex digits expected)'})
  end
  return entry
end

-- rq_replace key | grace_ms new old pxat [entry] : a write's fan-out. The coordinator made
-- ``new`` from ``old`` (what it held, '' for nothing) with rq_put, so where this
-- replica holds exactly ``old`` too, sync(old, new) is ``new`` itself: store it without
-- decoding either (GET, compare, SET). Anything else is an ordinary rq_merge. ``entry``:
-- new's digest entry as the coordinator computed it (a sha1 spared; '': compute it).
-- Returns 1 when the stored object changed, else 0.
local function replace(keys, args)
  if not ready then init() end
  local key, new, expected = keys[1], args[2], args[3]
  local entry = carried_entry(args[5])
  local cur = call('GET', key)
  if cur == new then return 0 end
  if cur == expected or (cur == false and expected == '') then
    local pxat = args[4]
    aae_store(key, new, entry)
    if pxat == '0' then
      call('SET', key, new)
    else
      call('SET', key, new, 'PXAT', pxat)
    end
    return 1
  end
  return merge(keys, {args[1], new}, true)
end

---------------------------------------------------------------------------
-- Last-write-wins mode. Every path keeps exactly one sibling: the highest (timestamp,
-- actor), tombstones and expired values included, so a read answers from that one
-- sibling alone (nil when it is dead). The rest of a sibling breaks exact ties, so every
-- replica keeps the same one whatever order objects arrive in. The clock is that one
-- sibling's dot alone: a version vector says nothing the winner's (timestamp, actor) does
-- not, and an entry per writer would grow with every proxy restart (proxy actors are per
-- process); the dot keeps the object valid for causal mode, should the cluster switch back.

local function lww_newest(best, sibs)
  for _, s in ipairs(sibs) do
    if best == nil or lww_less(best, s) then best = s end
  end
  return best
end

-- The newest sibling of the stored object and of the objects in args[first..last].
local function lww_reduce(old, args, first, last)
  local _, sibs = decode(old)
  local best = lww_newest(nil, sibs)
  for i = first, last do
    local _, s2 = decode(args[i])
    best = lww_newest(best, s2)
  end
  return best
end

local function store_lww(key, best, grace, old)
  if best == nil then return old, 0 end
  return store(key, {[best[1]] = best[2]}, {best}, grace, old)
end

-- rq_lww key | actor ts_us grace_ms tombstone expire_at_ms value
-- One round trip per replica: keep the incoming sibling if it is newer than what is
-- here. Its dot is (actor, ts_us). Returns 1 when a live value was here before, else 0.
local function lww(keys, args)
  if not ready then init() end
  local key = keys[1]
  local ts = tonumber(args[2])
  local incoming = {args[1], ts, ts, tonumber(args[4]), tonumber(args[5]), args[6]}
  local old = call('GET', key)
  local best = lww_reduce(old, args, 1, 0)
  local existed = 0
  if best and alive(best, floor(ts / 1000)) then existed = 1 end
  if best == nil or lww_less(best, incoming) then best = incoming end
  store_lww(key, best, args[3], old)
  return existed
end

-- rq_merge_lww key | grace_ms object... : keep the newest sibling of all.
-- Returns 1 when the stored object changed, else 0.
local function merge_lww(keys, args)
  if not ready then init() end
  local key = keys[1]
  local old = call('GET', key)
  if store_lww(key, lww_reduce(old, args, 2, #args), args[1], old) == old then return 0 end
  return 1
end

-- rq_replace_lww key | grace_ms new old pxat [entry] : rq_replace for a write made by
-- rq_put_lww, whose new sibling is newer than anything ``old`` held; anything else is
-- rq_merge_lww.
local function replace_lww(keys, args)
  if not ready then init() end
  local key, new, expected = keys[1], args[2], args[3]
  local entry = carried_entry(args[5])
  local cur = call('GET', key)
  if cur == new then return 0 end
  if cur == expected or (cur == false and expected == '') then
    aae_store(key, new, entry)
    if args[4] == '0' then
      call('SET', key, new)
    else
      call('SET', key, new, 'PXAT', args[4])
    end
    return 1
  end
  return merge_lww(keys, {args[1], new})
end

-- rq_put_lww key | count object... actor now_us context grace_ms sibling_hard_limit op
-- op-args... : rq_put_synced for read-modify-write operations in last-write-wins mode.
-- The operation applies to the newest sibling of the stored and synced objects (nothing
-- when that one is dead); the result is one sibling with dot (actor, timestamp), its
-- timestamp above every one seen. The context and the sibling limit play no part.
-- Returns what rq_put returns.
local function put_lww(keys, args)
  if not ready then init() end
  local key = keys[1]
  local count = tonumber(args[1])
  local old = call('GET', key)
  local best = lww_reduce(old, args, 2, count + 1)
  local i = count + 2
  local actor, now_us, grace, op = args[i], tonumber(args[i + 1]), args[i + 3], OPS[args[i + 5]]
  if op == nil then error({err = 'ERR redquorum: unknown operation ' .. tostring(args[i + 5])}) end
  local now_ms = floor(now_us / 1000)
  local cur = nil
  if best and alive(best, now_ms) then cur = best end
  local value, exp, tomb, reply = op(cur, now_ms, unpack(args, i + 6))
  if value == nil then return {false, exp} end
  local ts = now_us
  if best and best[3] >= ts then ts = best[3] + 1 end
  local blob, pxat = store(key, {[actor] = ts}, {{actor, ts, ts, tomb, exp, value}}, grace, old)
  return {blob, reply, old or false, pxat, blob ~= old and last_entry}
end

---------------------------------------------------------------------------
-- Hints (proxy/replication/handoff.py has the theory). A hint is a field of the hash
-- __rq:hints:<target> (the key; the object to hand over, '' for LWW's "the object held
-- here"); its creation time (ms, this replica's clock) is the member's score in the sorted
-- set __rq:hint-times:<target>, kept from the first hint for the key until it is
-- delivered, so the age of the oldest pending hint is one ZRANGE away. Hints written
-- before the times existed have no score: they deliver, their age is unknown.

local function clock_ms()
  local t = call('TIME')
  return tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
end

local function add_hint(hints, times, key, blob)
  call('HSET', hints, key, blob)
  call('ZADD', times, 'NX', clock_ms(), key)
end

-- rq_hint hints_key times_key | key object : leave a hint
local function hint(keys, args)
  if not ready then init() end
  add_hint(keys[1], keys[2], args[1], args[2])
  return 1
end

-- rq_hint_done hints_key times_key [key other_hints_key...] | key object [copy] : the hint
-- for ``key`` was delivered; drop it unless a newer write replaced it meanwhile (then the
-- newer one is delivered in a later page). With ``copy`` (the object that was delivered,
-- given when this replica is not a home of the key: it held the key as a fallback), the
-- key itself is deleted too if it still holds exactly that object and no other hint here
-- still needs it. A fallback's copy that moved on past the delivered object (it stood in
-- for another home since, and that hint went first) is newer than what the target got:
-- the hint then carries the copy as it is now, for a later page, instead of being dropped,
-- so the hint delivered last always holds the copy and takes it away. Returns {1 if the
-- hint was dropped else 0, ms since the hint was created (-1: unknown), 1 if the copy was
-- deleted else 0}.
local function hint_done(keys, args)
  if not ready then init() end
  local hints, times, key = keys[1], keys[2], args[1]
  if call('HGET', hints, key) ~= args[2] then return {0, -1, 0} end
  local copy = args[3]
  if copy and keys[3] == key then
    local held = call('GET', key)
    if held and held ~= copy then
      call('HSET', hints, key, held)
      return {0, -1, 0}
    end
  end
  call('HDEL', hints, key)
  local delay = -1
  if times then
    local created = call('ZSCORE', times, key)
    if created then
      delay = max(0, clock_ms() - tonumber(created))
      call('ZREM', times, key)
    end
  end
  local dropped = 0
  if copy and keys[3] == key and call('GET', key) == copy then
    for i = 4, #keys do
      if call('HEXISTS', keys[i], key) == 1 then return {1, delay, 0} end
    end
    aae_store(key, false)
    call('DEL', key)
    dropped = 1
  end
  return {1, delay, dropped}
end

-- rq_hint_stats hints_key times_key : {hints held, ms since the oldest one with a known
-- creation time was created (-1: none)}. Times whose hint is gone (a hash deleted by hand)
-- are dropped on the way.
local function hint_stats(keys, args)
  if not ready then init() end
  local count = call('HLEN', keys[1])
  local age = -1
  for _ = 1, 16 do
    local first = call('ZRANGE', keys[2], 0, 0, 'WITHSCORES')
    if #first == 0 then break end
    if count > 0 and call('HEXISTS', keys[1], first[1]) == 1 then
      age = max(0, clock_ms() - tonumber(first[2]))
      break
    end
    call('ZREM', keys[2], first[1])
  end
  return {count, age}
end

-- rq_hints_drop hints_key times_key : drop every hint (past the hint window); their count
local function hints_drop(keys, args)
  if not ready then init() end
  local count = call('HLEN', keys[1])
  call('DEL', keys[1], keys[2])
  return count
end

-- The functions a fallback runs for a home that is down (sloppy quorum).
local STAND_IN  -- (the BATCHED table below, once it is built)

-- rq_fallback key hints_key times_key | function args... : run ``function`` (one of
-- STAND_IN) on ``key`` as it would run on a home, then leave a hint with the object now
-- held for the home this replica stands in for, in the same atomic call: a fallback's copy
-- never exists without the hint that hands it home (and then drops it).
local function fallback(keys, args)
  if not ready then init() end
  local fn = STAND_IN[args[1]]
  if fn == nil then error({err = 'ERR redquorum: no fallback form of ' .. tostring(args[1])}) end
  local rest = {}
  for i = 2, #args do rest[i - 1] = args[i] end
  local key = keys[1]
  local result = fn({key}, rest)
  local held = call('GET', key)
  if held then add_hint(keys[2], keys[3], key, held) end
  return result
end

---------------------------------------------------------------------------
-- Cluster membership (proxy/replication/membership.py has the theory)

-- rq_members_put members_key | version record : keeps the higher of the stored record and
-- this one, ordered by (version, record bytes), so replicas sent records in any order
-- converge on one. Returns {version, record} as held afterwards.
local function members_put(keys, args)
  if not ready then init() end
  local held = call('HMGET', keys[1], 'version', 'record')
  local v, nv = tonumber(held[1]), tonumber(args[1])
  if not nv then error({err = 'ERR redquorum: the membership version must be a number'}) end
  if not v or v < nv or (v == nv and bytes_less(held[2] or '', args[2])) then
    call('HSET', keys[1], 'version', args[1], 'record', args[2])
    return {args[1], args[2]}
  end
  return {held[1], held[2]}
end

-- rq_drop_partitions cursor count mask : one SCAN step over this replica's keys, deleting
-- the objects of the partitions whose bit is set in ``mask`` (bit p of byte p // 8, low
-- bit first) through the digests' hook, so the digests keep matching the data. Used once
-- a membership change moved those partitions to other nodes. Returns {cursor, deleted}.
local function drop_partitions(keys, args)
  if not ready then init() end
  if not crc_table then aae_init() end
  local mask = args[3]
  local reply = call('SCAN', args[1], 'COUNT', args[2], 'TYPE', 'string')
  local deleted = 0
  for _, key in ipairs(reply[2]) do
    if aae_sub(key, 1, 5) ~= '__rq:' then
      local p = aae_place(key)
      if band(rshift(sbyte(mask, floor(p / 8) + 1), p % 8), 1) == 1 then
        aae_store(key, false)
        call('DEL', key)
        deleted = deleted + 1
      end
    end
  end
  return {reply[1], deleted}
end

-- rq_inspect key : {stored bytes or false, PTTL}
local function inspect(keys, args)
  if not ready then init() end
  return {call('GET', keys[1]), call('PTTL', keys[1])}
end

-- rq_live_count now_ms | key... : for EXISTS/DBSIZE-like counts without shipping values
local function live_count(keys, args)
  if not ready then init() end
  local now_ms = tonumber(args[1])
  local n = 0
  for _, key in ipairs(keys) do
    local blob = call('GET', key)
    if blob then
      local _, sibs = decode(blob)
      if winner(sibs, now_ms) then n = n + 1 end
    end
  end
  return n
end

-- A key a client may see: not the proxy's own bookkeeping, holding a live sibling.
local function visible(key, now_ms)
  if string.sub(key, 1, 5) == '__rq:' then return false end
  local blob = call('GET', key)
  if not blob then return false end
  local ok, _, sibs = pcall(decode, blob)
  return ok and winner(sibs, now_ms) ~= nil
end

-- rq_scan now_ms cursor count pattern : one SCAN step over this replica's keys, answering
-- {next cursor, visible keys}. Internal keys and dead objects (every sibling a tombstone
-- or expired) never show. proxy/scan.py walks the replicas with it.
local function scan(keys, args)
  if not ready then init() end
  local now_ms = tonumber(args[1])
  local reply = call('SCAN', args[2], 'MATCH', args[4], 'COUNT', args[3], 'TYPE', 'string')
  local found = {}
  for _, key in ipairs(reply[2]) do
    if visible(key, now_ms) then found[#found + 1] = key end
  end
  return {reply[1], found}
end

-- rq_randomkey now_ms : a random visible key of this replica, or false when it has none.
local function randomkey(keys, args)
  if not ready then init() end
  local now_ms = tonumber(args[1])
  for _ = 1, 32 do
    local key = call('RANDOMKEY')
    if not key then return false end
    if visible(key, now_ms) then return key end
  end
  -- mostly dead or internal keys: the first visible one of a walk
  local cursor = '0'
  repeat
    local reply = call('SCAN', cursor, 'COUNT', 1000, 'TYPE', 'string')
    cursor = reply[1]
    for _, key in ipairs(reply[2]) do
      if visible(key, now_ms) then return key end
    end
  until cursor == '0'
  return false
end

---------------------------------------------------------------------------
-- Batches. A proxy link sends the writes one pass of its reactor queues for a replica as
-- one call, so that what every write reads (the digest state, this process's actor) is
-- read once per call, and the digests take the proxy's crc32 of each key:
--   rq_many 0 | count crc function numkeys key... arg... [count crc function ...]
-- each entry being one call of a write function (``count`` strings from ``function`` on,
-- exactly what FCALL would take after its name) with the proxy's crc32 of its first key
-- (the ring partition; '' to compute it here). Entries run in order, each as if called on
-- its own; the reply holds one answer per entry, an entry's error as that element (an
-- error reply inside the array), so one bad key fails its own request only. (An FCALL's
-- own fixed cost is small on Redis 7.0, a few µs: INFO commandstats' usec for FCALL
-- counts the commands it runs. bench/replica_writes.py measures both.)

local BATCHED = {
  rq_set = set, rq_put = put, rq_put_synced = put_synced, rq_merge = merge, rq_replace = replace,
  rq_lww = lww, rq_merge_lww = merge_lww, rq_replace_lww = replace_lww, rq_put_lww = put_lww,
}

-- What pcall caught, as an error reply: Redis's pcall hands error({err = ...}) and a
-- failed redis.call over as their text ('ERR …', 'WRONGTYPE …'); a Lua runtime error is
-- 'user_function:N: …', with no error code of its own.
local function entry_error(e)
  if type(e) == 'table' and e.err then return {err = e.err} end
  e = tostring(e)
  if string.match(e, '^%u+ ') then return {err = e} end
  return {err = 'ERR ' .. e}
end

local function run_entry(args, i)
  local count, crc, fn = tonumber(args[i]), args[i + 1], BATCHED[args[i + 2]]
  local numkeys = tonumber(args[i + 3])
  if not count or count < 2 or not numkeys or numkeys < 0 or numkeys > count - 2 then
    error({err = 'ERR redquorum: malformed rq_many entry'})  -- the rest cannot be found
  end
  local last = i + 1 + count
  if fn == nil then
    return last, {err = 'ERR redquorum: rq_many does not carry ' .. tostring(args[i + 2])}
  end
  local k, a = {}, {}
  for j = 1, numkeys do k[j] = args[i + 3 + j] end
  for j = i + 4 + numkeys, last do a[#a + 1] = args[j] end
  placed_key, placed_crc = k[1], tonumber(crc)
  if placed_crc == nil then placed_key = nil end
  local ok, reply = pcall(fn, k, a)
  placed_key, placed_crc = nil, nil
  if not ok then return last, entry_error(reply) end
  if reply == nil then reply = false end
  return last, reply
end

local function many(keys, args)
  if not ready then init() end
  batch_state, batch_actor = true, false
  local out, i, n = {}, 1, #args
  local ok, e = pcall(function()
    while i <= n do
      local last, reply = run_entry(args, i)
      out[#out + 1] = reply
      i = last + 1
    end
  end)
  batch_state, batch_actor, placed_key, placed_crc = nil, nil, nil, nil
  if not ok then error(entry_error(e)) end
  return out
end

redis.register_function('rq_many', many)
redis.register_function{function_name = 'rq_library', callback = function() return LIBRARY_DIGEST end,
  flags = {'no-writes'}}
redis.register_function('rq_actor', actor_of)
redis.register_function('rq_hint_done', hint_done)
redis.register_function('rq_members_put', members_put)
redis.register_function('rq_drop_partitions', drop_partitions)
redis.register_function('rq_hint', hint)
redis.register_function('rq_hint_stats', hint_stats)
redis.register_function('rq_hints_drop', hints_drop)
redis.register_function('rq_fallback', fallback)
STAND_IN = BATCHED  -- a fallback runs the same write functions a batch carries
redis.register_function('rq_put', put)
redis.register_function('rq_set', set)
redis.register_function('rq_put_synced', put_synced)
redis.register_function('rq_merge', merge)
redis.register_function('rq_replace', replace)
redis.register_function('rq_lww', lww)
redis.register_function('rq_merge_lww', merge_lww)
redis.register_function('rq_replace_lww', replace_lww)
redis.register_function('rq_put_lww', put_lww)
redis.register_function{function_name = 'rq_inspect', callback = inspect, flags = {'no-writes'}}
redis.register_function{function_name = 'rq_live_count', callback = live_count, flags = {'no-writes'}}
redis.register_function{function_name = 'rq_scan', callback = scan, flags = {'no-writes'}}
redis.register_function{function_name = 'rq_randomkey', callback = randomkey, flags = {'no-writes'}}

-- Anti-entropy digests
redis.register_function{function_name = 'rq_aae_roots', callback = aae_roots, flags = {'no-writes'}}
redis.register_function{function_name = 'rq_aae_segments', callback = aae_segments, flags = {'no-writes'}}
redis.register_function{function_name = 'rq_aae_keys', callback = aae_keys, flags = {'no-writes'}}
redis.register_function{function_name = 'rq_aae_objects', callback = aae_objects, flags = {'no-writes'}}
redis.register_function('rq_aae_refresh', aae_refresh)
redis.register_function('rq_aae_rebuild', aae_rebuild)
redis.register_function('rq_aae_release', aae_release)
