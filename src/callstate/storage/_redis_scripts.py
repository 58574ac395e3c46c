"""Lua scripts of the Redis store; each touches the keys of one hash slot only.

Scripts run atomically on the server, so every check-then-write below is race-free
across processes. Numbers that must keep full precision (timestamps) travel as strings
and are only compared in Lua (``tonumber`` parses them exactly), never re-formatted.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SCRIPTS"]

# Pushes ARGV[from..to] onto a list in chunks (Lua's unpack has a stack limit).
_PUSH = """
local function push(key, from, to)
  local i = from
  while i <= to do
    local j = math.min(i + 999, to)
    redis.call('RPUSH', key, unpack(ARGV, i, j))
    i = j + 1
  end
end
"""

# Appends one batch b = {epoch, first_seq, last_seq, agent, status, last_interaction_at
# (a string), snapshot_seq, has_snapshot, snapshot, doubt_lo, doubt_hi, {event, ...},
# {part number, part, ...}} (msgpack-decoded) to the session whose meta, events,
# snapshot and snapshot parts keys are given.
# [doubt_lo, doubt_hi] is the seq range this writer may have committed without seeing
# the reply (0, 0 when none); only there may the batch overlap the stored journal.
# Returns 0 written, 4 already stored by an attempt whose reply was lost, 5 partly so
# (the rest written now), or {code, stored_epoch, stored_seq} with code 1 not found,
# 2 stale epoch, 3 seq conflict, 6 the stored meta is not numbers (tampered with).
_APPEND_ONE = """
local function append_one(meta, evkey, snapkey, partskey, b)
  local stored = redis.call('HMGET', meta, 'epoch', 'seq', 'last_interaction_at')
  if not stored[1] then return {1, 0, 0} end
  local epoch, seq, lia = tonumber(stored[1]), tonumber(stored[2]), tonumber(stored[3])
  if not (epoch and seq and lia) then return {6, 0, 0} end
  if epoch ~= b[1] then return {2, epoch, seq} end
  local first, last, events = b[2], b[3], b[12]
  local skip, code = 0, 0
  if first ~= seq + 1 then
    local upto = math.min(seq, last)
    if first > seq + 1 or first < b[10] or upto > b[11] then return {3, epoch, seq} end
    -- Only this writer holds this epoch, so equal bytes at equal seqs inside its range
    -- of doubt are its own unacknowledged commit: accept them, never write them twice.
    local have = redis.call('LRANGE', evkey, first - 1, upto - 1)
    if #have ~= upto - first + 1 then return {3, epoch, seq} end
    for i = 1, #have do
      if have[i] ~= events[i] then return {3, epoch, seq} end
    end
    skip, code = #have, 5
    if upto == last then return 4 end
  end
  local i = skip + 1
  while i <= #events do
    local j = math.min(i + 999, #events)
    redis.call('RPUSH', evkey, unpack(events, i, j))
    i = j + 1
  end
  redis.call('HSET', meta, 'seq', last, 'status', b[5])
  if b[4] ~= '' then redis.call('HSET', meta, 'agent', b[4]) end
  if tonumber(b[6]) > lia then
    redis.call('HSET', meta, 'last_interaction_at', b[6])
  end
  if b[8] == 1 then
    redis.call('SET', snapkey, b[9])
    redis.call('HSET', meta, 'snapshot_seq', b[7])
    local parts = b[13]
    local k = 1
    while k <= #parts do  -- in slices: unpack has a stack limit
      local j = math.min(k + 999, #parts)
      redis.call('HSET', partskey, unpack(parts, k, j))
      k = j + 1
    end
  end
  return code
end
"""

# KEYS: meta, events, snapshot, parts of one session. ARGV: the msgpack-encoded batch.
APPEND: Final = (
    _APPEND_ONE + "return append_one(KEYS[1], KEYS[2], KEYS[3], KEYS[4], cmsgpack.unpack(ARGV[1]))"
)

# KEYS: meta, events, snapshot, parts of each session in turn. ARGV: the msgpack-encoded list
# of their batches. One script for a whole group commit (keys of many slots: standalone
# Redis only). Returns one result per batch, as ``append_one``.
APPEND_MANY: Final = (
    _APPEND_ONE
    + """
local out = {}
for i, b in ipairs(cmsgpack.unpack(ARGV[1])) do
  out[i] = append_one(KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i], b)
end
return out
"""
)

# KEYS: meta, events, snapshot. ARGV: retrying ('1'/'0'), has_snapshot, snapshot,
# n_fields, field, value, ..., event...
# Returns 1 created, 0 exists, 2 exists and equals this create (a retried create).
CREATE: Final = (
    _PUSH
    + """
local nf = tonumber(ARGV[4])
local ev0 = 5 + 2 * nf
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[1] ~= '1' then return 0 end
  local have = redis.call('LRANGE', KEYS[2], 0, #ARGV - ev0)
  if #have ~= #ARGV - ev0 + 1 then return 0 end
  for i = 1, #have do
    if have[i] ~= ARGV[ev0 + i - 1] then return 0 end
  end
  return 2
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 5, ev0 - 1))
push(KEYS[2], ev0, #ARGV)
if ARGV[2] == '1' then redis.call('SET', KEYS[3], ARGV[3]) end
return 1
"""
)

# KEYS: meta, events, snapshot, parts. Returns {meta fields..., {snapshot?}, {events...},
# {part number, part, ...}} or {}.
LOAD: Final = """
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return {} end
local from = tonumber(redis.call('HGET', KEYS[1], 'snapshot_seq') or '0')
local snap = redis.call('GET', KEYS[3])
local snaps, parts = {}, {}
if snap then
  snaps[1] = snap
  parts = redis.call('HGETALL', KEYS[4])
else
  from = 0
end
return {meta, snaps, redis.call('LRANGE', KEYS[2], from, -1), parts}
"""

# KEYS: meta, events. ARGV: after_seq. Returns {found, {events...}}.
READ_EVENTS: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, {}} end
return {1, redis.call('LRANGE', KEYS[2], tonumber(ARGV[1]), -1)}
"""

# KEYS: meta. ARGV: expected_epoch, owner, lease_until, claim_id. Returns {code, epoch}:
# 0 claimed (epoch is the new one; also when this very claim, by its claim id, took it
# before its reply was lost), 1 not found, 2 stale (epoch is the stored one). A meta
# hash without ``claim_id`` (written before claims carried one) claims as ever.
CLAIM: Final = """
local f = redis.call('HMGET', KEYS[1], 'epoch', 'claim_id')
if not f[1] then return {1, 0} end
local epoch, expected = tonumber(f[1]), tonumber(ARGV[1])
if epoch == expected + 1 and f[2] == ARGV[4] then return {0, epoch} end
if epoch ~= expected then return {2, epoch} end
local new = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'lease_owner', ARGV[2], 'lease_until', ARGV[3], 'claim_id', ARGV[4])
return {0, new}
"""

# KEYS: meta. ARGV: owner, until. Returns 1 if the owner holds the lease (renewed).
RENEW: Final = """
if redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[2])
return 1
"""

# KEYS: meta. ARGV: owner.
RELEASE: Final = """
if redis.call('HGET', KEYS[1], 'lease_owner') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'lease_owner')
  redis.call('HSET', KEYS[1], 'lease_until', '0')
end
return 0
"""

# KEYS: meta, events, snapshot, callers, parts. Run once the caller entries are gone.
PURGE: Final = """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return 0
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
# names every class counted. Returns 1 inserted, 0 exists, 2 exists with these exact
# fields (a retried insert).
ARCHIVE_INSERT: Final = (
    _INSERT_ONCE
    + """local f = redis.call('HMGET', KEYS[1], 'record_id', 'ended_at', 'closed_at',
                     'health', 'recover_s')
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

# KEYS: followup, due index, claimed index, session set. ARGV: session-set key prefix,
# field, value, ... Replaces a pending follow-up whole. Returns 1 stored, 0 kept (it is
# no longer pending).
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

# KEYS: followup, due index, claimed index. ARGV: retrying, owner, mark, now, retry_at
# ('' for done), has error ('1'/'0'), error. Returns 1 settled (now or by this very call
# before its reply was lost), 0 not held.
FOLLOWUP_SETTLE: Final = """
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
    local lag = tonumber(ARGV[3]) - tonumber(due)
    redis.call('ZADD', KEYS[4], due, string.format('%.17g', lag) .. '|' .. f[3])
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

#: Every script by name.
SCRIPTS: Final[dict[str, str]] = {
    "append": APPEND,
    "append_many": APPEND_MANY,
    "create": CREATE,
    "load": LOAD,
    "read_events": READ_EVENTS,
    "claim": CLAIM,
    "renew": RENEW,
    "release": RELEASE,
    "purge": PURGE,
    "archive_insert": ARCHIVE_INSERT,
    "archive_list": ARCHIVE_LIST,
    "followup_put": FOLLOWUP_PUT,
    "followup_cancel": FOLLOWUP_CANCEL,
    "followup_claim": FOLLOWUP_CLAIM,
    "followup_done": FOLLOWUP_DONE,
    "followup_start": FOLLOWUP_START,
    "followup_settle": FOLLOWUP_SETTLE,
    "followup_retry": FOLLOWUP_RETRY,
    "package_put": PACKAGE_PUT,
    "package_transition": PACKAGE_TRANSITION,
}
