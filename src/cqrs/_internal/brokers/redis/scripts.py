"""The Lua scripts of the Redis broker: each is one atomic step on a stream and its group.

Ownership checks (``XPENDING`` of one id, then its consumer) and the change they guard run
in one script, so a subscription never takes back a message another consumer has claimed
meanwhile. Scripts are run with redis-py's ``Script`` objects, which load them again when
Redis forgot them (a restart).
"""

from __future__ import annotations

__all__ = [
    "ADD_ONCE",
    "CLAIM",
    "DEAD_LETTER",
    "RELEASE",
    "RELEASED_IDLE_MS",
    "RENEW",
    "REQUEUE",
    "SWEEP",
]

RELEASED_IDLE_MS = 10**12
"""The idle time (about 31 years) given to a returned message, so that the next
``XAUTOCLAIM`` of any subscription, whatever its ``claim_idle``, takes it at once."""

# A publish retried after its outcome was lost (the connection broke after Redis may have
# stored it): add each message unless an entry with its id is among the newest ones.
# KEYS[1]: stream. ARGV[1]: lowest entry id to look at ('-' or '(<id>'), ARGV[2]: how many of
# the newest entries to look at, at most, ARGV[3]: maxlen ('' for none); then per message:
# its id, its number of fields n, and n field/value pairs. Returns {the entry id of each,
# 1 for each found already stored and 0 for each added now}.
ADD_ONCE = """
local seen = {}
local newest = redis.call('XREVRANGE', KEYS[1], '+', ARGV[1], 'COUNT', ARGV[2])
for _, entry in ipairs(newest) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then
      seen[fields[i + 1]] = entry[1]
      break
    end
  end
end
local stored, already = {}, {}
local i = 4
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  local found = seen[id]
  already[#already + 1] = found and 1 or 0
  if not found then
    local fields = {}
    for j = 1, 2 * n do fields[j] = ARGV[i + 1 + j] end
    if ARGV[3] == '' then
      found = redis.call('XADD', KEYS[1], '*', unpack(fields))
    else
      found = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
    end
  end
  stored[#stored + 1] = found
  i = i + 2 + 2 * n
end
return {stored, already}
"""

# Take over messages idle for at least the given time (consumers that died, or returned
# messages) and read their delivery counts in the same step.
# KEYS[1]: stream. ARGV: group, consumer, min idle ms, cursor, count.
# Returns {next cursor, entries, ids deleted from the stream, delivery count of each entry}.
CLAIM = """
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
  'COUNT', ARGV[5])
local counts = {}
for i, entry in ipairs(claimed[2]) do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
  counts[i] = pending[1] and pending[1][4] or 1
end
return {claimed[1], claimed[2], claimed[3] or {}, counts}
"""

# Renew the lease of the messages this consumer holds (reset their idle time, not their
# delivery count). KEYS[1]: stream. ARGV: group, consumer, ids... Returns the ids this
# consumer no longer owns (claimed by another after it was cut off too long, or gone).
RENEW = """
local lost = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# Deliver a message again to its owner (nack with requeue): count one more delivery.
# KEYS[1]: stream. ARGV: group, consumer, id. Returns {delivery count, fields}, or nil when the
# consumer no longer owns it or the entry was trimmed away.
REQUEUE = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not (pending[1] and pending[1][2] == ARGV[2]) then return nil end
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3])
if not claimed[1] then return nil end
return {pending[1][4] + 1, claimed[1][2]}
"""

# Store the dead-letter copy and acknowledge the original, in one step; a message no longer
# pending (its copy was stored by an earlier try whose reply was lost, or another consumer
# settled it) is left alone. KEYS[1]: stream, KEYS[2]: dead-letter stream.
# ARGV: group, id, maxlen ('' for none), then the copy's field/value pairs.
# Returns 1 when the copy was stored, 0 when the message was no longer pending.
DEAD_LETTER = """
local pending = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if type(pending) == 'table' and not pending.err and not pending[1] then return 0 end
if ARGV[3] == '' then
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
end
redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# Return every message this consumer holds to the group (a closing subscription): each is
# made idle for RELEASED_IDLE_MS, so the next XAUTOCLAIM of any subscription takes it. The
# ids given were fetched but never handed out: their delivery count goes back down by one.
# Those trimmed away from the stream meanwhile leave the pending list (XCLAIM drops them).
# A consumer left with nothing pending is deleted. KEYS[1]: stream.
# ARGV: group, consumer, idle ms, fresh ids... Returns {returned, trimmed}.
RELEASE = """
local fresh = {}
for i = 4, #ARGV do fresh[ARGV[i]] = true end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 100000, ARGV[2])
local returned = 0
for _, entry in ipairs(pending) do
  local count = entry[4]
  if fresh[entry[1]] and count > 0 then count = count - 1 end
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, entry[1],
    'IDLE', ARGV[3], 'RETRYCOUNT', count, 'JUSTID')
  if claimed[1] then returned = returned + 1 end
end
if returned == 0 then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return {returned, #pending - returned}
"""

# Delete the consumers of a group that hold nothing and were idle for at least the given time
# (what dead processes leave behind once their messages were claimed). A consumer deleted
# this way that is in fact alive is recreated by its next read: it held nothing to lose.
# KEYS[1]: stream. ARGV: group, min idle ms, a consumer to keep. Returns how many were deleted.
SWEEP = """
local deleted = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    deleted = deleted + 1
  end
end
return deleted
"""
