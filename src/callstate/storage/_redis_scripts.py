"""Lua scripts of the Redis store's sessions (``SCRIPTS`` also holds the records'
scripts, from ``_redis_record_scripts``); each touches the keys of one hash slot only.

Scripts run atomically on the server, so every check-then-write below is race-free
across processes. Numbers that must keep full precision (timestamps) travel as strings
and are only compared in Lua (``tonumber`` parses them exactly), never re-formatted.
"""

from __future__ import annotations

from typing import Final

from ._redis_record_scripts import RECORD_SCRIPTS

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
  local stored = redis.call('HMGET', meta, 'epoch', 'seq', 'last_interaction_at', 'status', 'agent')
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
  -- one HSET of the fields that change: one command in the append-only file, not four
  local set = {'seq', last}
  if b[5] ~= stored[4] then set[#set + 1] = 'status'; set[#set + 1] = b[5] end
  if b[4] ~= '' and b[4] ~= stored[5] then set[#set + 1] = 'agent'; set[#set + 1] = b[4] end
  if tonumber(b[6]) > lia then
    set[#set + 1] = 'last_interaction_at'; set[#set + 1] = b[6]
  end
  if b[8] == 1 then set[#set + 1] = 'snapshot_seq'; set[#set + 1] = b[7] end
  redis.call('HSET', meta, unpack(set))
  if b[8] == 1 then
    redis.call('SET', snapkey, b[9])
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

# KEYS: meta, events, snapshot, parts of one session. ARGV: expected_epoch, owner,
# lease_until, claim_id, the msgpack-encoded batch (written at expected_epoch + 1).
# A claim and its first batch in one step: everything is checked before anything is
# written, so a batch that does not follow the journal leaves the session as it was.
# Returns {0, new epoch} claimed and appended (also when this very claim, by its claim
# id, took it before its reply was lost: its batch is then appended unless stored),
# {1, 0} not found, {2, stored epoch} stale, {3, stored seq} the batch does not
# follow, {6, 0} the stored meta is not numbers.
CLAIM_THEN: Final = (
    _APPEND_ONE
    + """
local f = redis.call('HMGET', KEYS[1], 'epoch', 'claim_id', 'seq', 'last_interaction_at')
if not f[1] then return {1, 0} end
local epoch, expected = tonumber(f[1]), tonumber(ARGV[1])
local b = cmsgpack.unpack(ARGV[5])
if epoch == expected + 1 and f[2] == ARGV[4] then
  -- only this claim writes at its epoch: events in the batch's range are its own
  b[10], b[11] = b[2], b[3]
  local code = append_one(KEYS[1], KEYS[2], KEYS[3], KEYS[4], b)
  if type(code) == 'table' then return {code[1], code[3]} end
  return {0, epoch}
end
if epoch ~= expected then return {2, epoch} end
local seq = tonumber(f[3])
if not (seq and tonumber(f[4])) then return {6, 0} end
if b[2] ~= seq + 1 then return {3, seq} end
local new = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'lease_owner', ARGV[2], 'lease_until', ARGV[3], 'claim_id', ARGV[4])
append_one(KEYS[1], KEYS[2], KEYS[3], KEYS[4], b)
return {0, new}
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

#: Every script by name.
SCRIPTS: Final[dict[str, str]] = {
    "append": APPEND,
    "append_many": APPEND_MANY,
    "create": CREATE,
    "load": LOAD,
    "read_events": READ_EVENTS,
    "claim": CLAIM,
    "claim_then": CLAIM_THEN,
    "renew": RENEW,
    "release": RELEASE,
    "purge": PURGE,
    **RECORD_SCRIPTS,
}
