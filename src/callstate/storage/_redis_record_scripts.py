"""Lua scripts of the Redis store's fleet-wide records: archive, fleet-figure rollup,
follow-ups, handoff packages, and the migration lock; each touches one hash slot only.

Like the journal's scripts (``_redis_scripts``), every check-then-write runs atomically
on the server, and timestamps travel as strings compared only in Lua.
"""

from __future__ import annotations

from typing import Final

from .histogram import MIN_SECONDS
from .rollup import DAY_HOURS, LOG_GAMMA, ROLLUP_S, ZERO_BIN

__all__ = ["RECORD_SCRIPTS"]

# Counts into the fleet-figure rollup under prefix ``pre`` (``…:roll:``) at time ``at``:
# the hour's and the day's hashes (``h:<hour>``, ``d:<day>``, listed in the ``h`` and ``d``
# sorted sets) get ``counts`` (field -> n) and, when ``s`` (seconds, a string) is given,
# one sample in bin field ``kind:<bin>`` with the largest kept as its string in ``kind..'max'``.
_ROLL = f"""
local function roll(pre, at, counts, kind, s)
  local h = math.floor(at / {ROLLUP_S})  -- the exact floor, as storage.rollup.hour_of
  if h * {ROLLUP_S} > at then h = h - 1 elseif (h + 1) * {ROLLUP_S} <= at then h = h + 1 end
  local field, v
  if s then
    v = tonumber(s)
    local b = {ZERO_BIN}
    if v >= {MIN_SECONDS!r} then b = math.ceil(math.log(v) / {LOG_GAMMA!r}) end
    field = kind .. ':' .. string.format('%d', b)
  end
  for _, lvl in ipairs({{{{'h', h}}, {{'d', math.floor(h / {DAY_HOURS})}}}}) do
    local id = string.format('%d', lvl[2])
    local key = pre .. lvl[1] .. ':' .. id
    redis.call('ZADD', pre .. lvl[1], lvl[2], id)
    for f, n in pairs(counts) do redis.call('HINCRBY', key, f, n) end
    if field then
      redis.call('HINCRBY', key, field, 1)
      local top = redis.call('HGET', key, kind .. 'max')
      if not top or v > tonumber(top) then redis.call('HSET', key, kind .. 'max', s) end
    end
  end
end
"""

# The start of an insert-only hash KEYS[1]; ARGV: retrying, field, value, ... If the
# hash exists it returns 2 when retrying and every field is as given (a retried insert
# whose reply was lost), else 0; otherwise it writes the hash and goes on.
_INSERT_ONCE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[1] ~= '1' then return 0 end
  for i = 2, #ARGV, 2 do
    if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return 0 end
  end
  return 2
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
"""

# KEYS: record, by-time, by-session, [by-caller], then the figure keys (named
# {archive}:fig:…): by-class, [with-tools], [with-in-doubt], [recover], classes.
# ARGV: retrying, field, value, ... Index keys are scored by ended_at, figure keys by
# closed_at; the recover key's members carry the seconds ("4.5|id"), the classes set
# names every class counted; a leg with closed_at is rolled up ({archive}:roll:) in
# the same script. Returns 1 inserted, 0 exists, 2 exists with these exact fields (a
# retried insert).
ARCHIVE_INSERT: Final = (
    _ROLL
    + _INSERT_ONCE
    + """local f = redis.call('HMGET', KEYS[1], 'record_id', 'ended_at', 'closed_at',
                     'health', 'recover_s', 'tools', 'in_doubt')
local id, at, closed = f[1], f[2], f[3]
local fig = string.sub(KEYS[2], 1, #KEYS[2] - 4) .. 'fig:'
for i = 2, #KEYS do
  local k = KEYS[i]
  if string.sub(k, 1, #fig) ~= fig then
    redis.call('ZADD', k, at, id)
  elseif k == fig .. 'classes' then
    redis.call('SADD', k, f[4] or 'unknown')
  elseif k == fig .. 'recover' then
    redis.call('ZADD', k, closed, f[5] .. '|' .. id)
  else
    redis.call('ZADD', k, closed, id)
  end
end
if closed then
  local counts = {['n:' .. (f[4] or 'unknown')] = 1}
  if tonumber(f[6]) > 0 then counts['tools'] = 1 end
  if tonumber(f[7]) > 0 then counts['in_doubt'] = 1 end
  roll(string.sub(fig, 1, #fig - 4) .. 'roll:', tonumber(closed), counts, 'r', f[5])
end
return 1
"""
)

# KEYS: index (by-time, by-session or by-caller). ARGV: record key prefix, min score
# ('-inf' or a time), limit, session filter ('' = any), caller filter ('' = any).
ARCHIVE_LIST: Final = """
local out, offset, limit = {}, 0, tonumber(ARGV[3])
while #out < limit do
  local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[2], 'LIMIT', offset, 200)
  if #ids == 0 then break end
  offset = offset + #ids
  for _, id in ipairs(ids) do
    local row = redis.call('HGETALL', ARGV[1] .. id)
    local f = {}
    for i = 1, #row, 2 do f[row[i]] = row[i + 1] end
    if #row > 0 and (ARGV[4] == '' or f['session_id'] == ARGV[4])
        and (ARGV[5] == '' or f['caller_hash'] == ARGV[5]) then
      out[#out + 1] = row
      if #out >= limit then break end
    end
  end
end
return out
"""

# KEYS: followup, due index, claimed index, session set, every follow-up's id. ARGV:
# session-set key prefix, field, value, ... Replaces a pending follow-up whole. Returns 1
# stored, 0 kept (it is no longer pending).
FOLLOWUP_PUT: Final = """
local status = redis.call('HGET', KEYS[1], 'status')
if status and status ~= 'pending' then return 0 end
local old = redis.call('HGET', KEYS[1], 'session_id')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
local f = redis.call('HMGET', KEYS[1], 'followup_id', 'session_id', 'status', 'due_at',
                     'claimed_until')
if old and old ~= f[2] then redis.call('SREM', ARGV[1] .. old, f[1]) end
redis.call('SADD', KEYS[4], f[1])
redis.call('SADD', KEYS[5], f[1])
redis.call('ZREM', KEYS[2], f[1])
redis.call('ZREM', KEYS[3], f[1])
if f[3] == 'pending' then
  redis.call('ZADD', KEYS[2], f[4], f[1])
elseif f[3] == 'claimed' then
  redis.call('ZADD', KEYS[3], f[5], f[1])
end
return 1
"""

# KEYS: session set, due index. ARGV: followup key prefix, cancel id. Returns how many
# cancelled, counting those this very call (by its cancel id) cancelled before its reply
# was lost.
FOLLOWUP_CANCEL: Final = """
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. id
  local f = redis.call('HMGET', key, 'status', 'cancel_id')
  if f[1] == 'pending' then
    redis.call('HSET', key, 'status', 'cancelled', 'cancel_id', ARGV[2])
    redis.call('ZREM', KEYS[2], id)
    n = n + 1
  elseif f[1] == 'cancelled' and f[2] == ARGV[2] then
    n = n + 1
  end
end
return n
"""

# KEYS: due index, claimed index. ARGV: retrying, followup key prefix, now, owner,
# claimed_until, limit. Due pending and lapsed claims are claimed in due order; a retry
# also returns what this very call (same owner and claimed_until) claimed before its
# reply was lost. Returns {{id, session_id, due_at, payload}, ...}.
FOLLOWUP_CLAIM: Final = """
local limit = tonumber(ARGV[6])
local picked, seen = {}, {}
local function gather(ids)
  for _, id in ipairs(ids) do
    if not seen[id] then
      seen[id] = true
      picked[#picked + 1] = {id, tonumber(redis.call('HGET', ARGV[2] .. id, 'due_at'))}
    end
  end
end
gather(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, limit))
gather(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, limit))
if ARGV[1] == '1' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[5], ARGV[5])) do
    if redis.call('HGET', ARGV[2] .. id, 'claimed_by') == ARGV[4] then gather({id}) end
  end
end
table.sort(picked, function(a, b) return a[2] < b[2] end)
local out = {}
for i = 1, math.min(limit, #picked) do
  local id, key = picked[i][1], ARGV[2] .. picked[i][1]
  redis.call('HSET', key, 'status', 'claimed', 'claimed_by', ARGV[4], 'claimed_until', ARGV[5])
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], ARGV[5], id)
  local f = redis.call('HMGET', key, 'session_id', 'due_at', 'payload')
  out[i] = {id, f[1], f[2], f[3]}
end
return out
"""

# KEYS: followup, claimed index. ARGV: retrying, owner. Returns 1 done, 0 not held.
FOLLOWUP_DONE: Final = """
local f = redis.call('HMGET', KEYS[1], 'status', 'claimed_by', 'followup_id')
if f[2] ~= ARGV[2] then return 0 end
if f[1] == 'done' and ARGV[1] == '1' then return 1 end
if f[1] ~= 'claimed' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'done')
redis.call('ZREM', KEYS[2], f[3])
return 1
"""

# KEYS: followup. ARGV: owner, now. Counts a start once per claim (a retry finds its
# claim counted). Returns the attempt number, 0 not held.
FOLLOWUP_START: Final = """
local f = redis.call('HMGET', KEYS[1], 'status', 'claimed_by', 'claimed_until',
                     'started_until', 'attempts')
if f[1] ~= 'claimed' or f[2] ~= ARGV[1] then return 0 end
local n = tonumber(f[5] or '0')
if f[4] ~= f[3] then n = n + 1 end
redis.call('HSET', KEYS[1], 'attempts', n, 'started_until', f[3], 'updated_at', ARGV[2])
return n
"""

# KEYS: followup, due index, claimed index, lag. ARGV: retrying, owner, mark, now,
# retry_at ('' for done), has error ('1'/'0'), error. A success's lag is rolled up
# ({followups}:roll:) in the same script. Returns 1 settled (now or by this very call
# before its reply was lost), 0 not held.
FOLLOWUP_SETTLE: Final = (
    _ROLL
    + """
local retrying = table.remove(ARGV, 1)
local f = redis.call('HMGET', KEYS[1], 'status', 'claimed_by', 'followup_id', 'mark',
                     'updated_at')
if f[2] ~= ARGV[1] then return 0 end
if retrying == '1' and f[4] == ARGV[2] and f[5] == ARGV[3] then
  local target = 'pending'
  if ARGV[4] == '' then target = 'done' end
  if f[1] == target then return 1 end
end
if f[1] ~= 'claimed' then return 0 end
redis.call('ZREM', KEYS[3], f[3])
if ARGV[4] == '' then
  redis.call('HSET', KEYS[1], 'status', 'done')
  if ARGV[2] == 'succeeded' and KEYS[4] then
    -- follow-up lag for fleet figures: due -> finished, scored by when it was due
    local due = redis.call('HGET', KEYS[1], 'due_at')
    local lag = string.format('%.17g', tonumber(ARGV[3]) - tonumber(due))
    redis.call('ZADD', KEYS[4], due, lag .. '|' .. f[3])
    roll(string.sub(KEYS[4], 1, #KEYS[4] - 3) .. 'roll:', tonumber(due), {}, 'l', lag)
  end
else
  redis.call('HSET', KEYS[1], 'status', 'pending', 'due_at', ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[4], f[3])
end
redis.call('HSET', KEYS[1], 'mark', ARGV[2], 'updated_at', ARGV[3])
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'last_error', ARGV[6])
else
  redis.call('HDEL', KEYS[1], 'last_error')
end
return 1
"""
)

# KEYS: followup, due index. ARGV: retrying, now. Returns 1 due again (now or by this
# very call before its reply was lost), 0 not dead/orphaned/retrying.
FOLLOWUP_RETRY: Final = """
local f = redis.call('HMGET', KEYS[1], 'status', 'mark', 'followup_id', 'due_at',
                     'updated_at')
if ARGV[1] == '1' and f[1] == 'pending' and f[2] == '' and f[4] == ARGV[2]
   and f[5] == ARGV[2] then return 1 end
local ok = (f[1] == 'done' and f[2] == 'dead')
  or (f[1] == 'pending' and (f[2] == 'retrying' or f[2] == 'orphaned'))
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'status', 'pending', 'mark', '', 'due_at', ARGV[2],
           'updated_at', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], f[3])
return 1
"""

# KEYS: package. ARGV: retrying, field, value, ... Returns 1 stored, 0 exists, 2 retried.
PACKAGE_PUT: Final = _INSERT_ONCE + "return 1\n"

# KEYS: package. ARGV: from, to, transition id. Returns 1 moved (now or by this very
# call before its reply was lost), 0 not in ``from``.
PACKAGE_TRANSITION: Final = """
local f = redis.call('HMGET', KEYS[1], 'status', 'transition_id')
if f[1] == ARGV[2] and f[2] == ARGV[3] then return 1 end
if not f[1] or f[1] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'transition_id', ARGV[3])
return 1
"""

# KEYS: a rollup's hour and day listings (``…:roll:h``, ``…:roll:d``). ARGV: spans as
# level ('h' or 'd'), first, end (exclusive), ... Sums every field of the hashes in the
# spans (``rmax``/``lmax``: the largest). Returns {field, value, ...}.
ROLLUP_READ: Final = """
local sum, top = {}, {}
for i = 1, #ARGV, 3 do
  local index = KEYS[1]
  if ARGV[i] == 'd' then index = KEYS[2] end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, ARGV[i + 1], '(' .. ARGV[i + 2])) do
    local row = redis.call('HGETALL', index .. ':' .. id)
    for j = 1, #row, 2 do
      local f, v = row[j], row[j + 1]
      if f == 'rmax' or f == 'lmax' then
        if not top[f] or tonumber(v) > tonumber(top[f]) then top[f] = v end
      else
        sum[f] = (sum[f] or 0) + tonumber(v)
      end
    end
  end
end
local out = {}
for f, n in pairs(sum) do out[#out + 1] = f; out[#out + 1] = string.format('%d', n) end
for f, v in pairs(top) do out[#out + 1] = f; out[#out + 1] = v end
return out
"""

# KEYS: a lock. ARGV: token, ttl_ms ('' frees it). Returns 1 while ``token`` holds it
# (renewed, or freed now), 0 when it does not (it lapsed).
LOCK: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

#: The records' scripts by name: each public constant above, named in lower case.
RECORD_SCRIPTS: Final[dict[str, str]] = {
    name.lower(): src
    for name, src in dict(globals()).items()
    if name.isupper() and name[0] != "_" and isinstance(src, str)
}
