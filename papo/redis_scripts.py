"""The Lua scripts of the Redis store (:mod:`papo.store_redis`), in one place.

Each script runs atomically in Redis. Key names are built inside some of them
from their arguments (a room's or a user's keys): on one Redis that is fine;
Redis Cluster wants every key in ``KEYS`` and in one slot, and the per-room
and per-user hash tags (``{r:#sala}``, ``{u:ana}``, ``{d:@ana|beto}``) are
chosen so that the split can follow the data (issue 13).
"""

from __future__ import annotations

# Shared by the room scripts: key names, the newest id of a stream, unread
# counts, room creation and the change events on the ``{papo}:events`` channel.
ROOMS_LIB = """
local function room(k, what) return '{r:' .. k .. '}:' .. what end
local function user(k, what) return '{u:' .. k .. '}:' .. what end
local function stream_of(conv)
  if string.sub(conv, 1, 1) == '@' then return '{d:' .. conv .. '}:messages' end
  return room(conv, 'messages')
end
local function id_of(entry_id) return tonumber(string.match(entry_id, '%-(%d+)$')) end
local function newest(stream)
  local r = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if r[1] then return id_of(r[1][1]) end
  return 0
end
-- Messages of others in `stream` after `after`, counted up to `cap` (edits and
-- deletions, entries with a kind `e`, are not messages).
local function unread_in(stream, after, key, cap)
  local count, cursor = 0, '(0-' .. string.format('%d', after)
  while count < cap do
    local r = redis.call('XRANGE', stream, cursor, '+', 'COUNT', 200)
    for _, e in ipairs(r) do
      local f, other, entry = e[2], false, false
      for j = 1, #f, 2 do
        if f[j] == 'k' then other = f[j + 1] ~= key elseif f[j] == 'e' then entry = true end
      end
      if other and not entry then count = count + 1 end
    end
    if #r < 200 then break end
    cursor = '(' .. r[#r][1]
  end
  return math.min(count, cap)
end
local function unread(conv, after, key, cap) return unread_in(stream_of(conv), after, key, cap) end
local function ensure_meta(meta, name, topic, by, created)
  if redis.call('EXISTS', meta) == 1 then return 0 end
  redis.call('HSET', meta, 'name', name, 'topic', topic, 'created_by', by, 'created', created)
  return 1
end
local function ensure_room(key, name, topic, by, created)
  if ensure_meta(room(key, 'meta'), name, topic, by, created) == 0 then return 0 end
  redis.call('SADD', '{papo}:rooms', key)
  return 1
end
-- A change every instance hears: ARGV[1..3] are always instance, origin, token.
-- The id goes as a string: cjson writes numbers with 14 digits, cluster ids have 16.
local function event(kind, conv, room_name, key, name, topic, id)
  redis.call('PUBLISH', '{papo}:events', cjson.encode({e = 'room', kind = kind, c = conv,
    r = room_name, k = key, n = name, t = topic, m = string.format('%d', id),
    i = ARGV[1], o = ARGV[2], w = ARGV[3]}))
end
"""

# Shared by the append scripts: the oldest id a conversation keeps once `stream`
# gets one more entry, when that pushes older ones out (nil when it does not;
# 0 when the new entry alone stays), with `retention` entries kept.
TRIM_LIB = """
local function oldest_after_add(stream, retention)
  local len = redis.call('XLEN', stream)
  if len < retention then return nil end
  if retention == 1 then return 0 end
  local r = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - retention + 2)
  return tonumber(string.match(r[#r][1], '%-(%d+)$'))
end
"""

# Append a batch of messages. KEYS: seq, trims hash, the shared direct stream.
# ARGV: retention, floor (the newest id this instance has seen), cid ttl, and
# the batch as one JSON array with per message: cid key ('' when none),
# conversation, its stream, for a direct message the two users (key, name,
# key, name; '' for a room), and the array of its field strings (name, value,
# ...). One string, not a dozen arguments a message: redis-py's encoding of
# each argument cost more than the rest of the append (issue 13's profile).
# Returns new (1 or 0) and id for each message.
#
# Ids come from one INCR for the whole chat, assigned here in the same script
# as the XADDs, so every stream's entry ids increase and an id taken is in its
# stream before any later one exists: readers merge streams by id. (Cluster
# mode will assign ids per conversation: issue 13.) Each conversation's
# stream keeps `retention` messages; a message that pushed older ones out
# carries `g`, the oldest id its conversation still keeps (and the trims hash
# remembers it), and the stream's rewritten entries (edited or deleted, kept in
# the sorted set beside it: papo.store_redis_lifecycle) older than that go too.
# A direct message also goes to the shared direct stream, which
# every instance follows, and records the conversation for both users.
APPEND = (
    TRIM_LIB
    + """
local retention, floor, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local out = {}
for _, m in ipairs(cjson.decode(ARGV[4])) do
  local cid_key, conv, stream = m[1], m[2], m[3]
  local a_key, a_name, b_key, b_name = m[4], m[5], m[6], m[7]
  local earlier = cid_key ~= '' and redis.call('GET', cid_key)
  if earlier then
    table.insert(out, 0)
    table.insert(out, tonumber(earlier))
  else
    local id = redis.call('INCR', KEYS[1])
    if id <= floor then  -- Redis lost its data: never hand out an id twice
      id = floor + 1
      redis.call('SET', KEYS[1], id)
    end
    floor = id
    local fields = m[8]
    local g = oldest_after_add(stream, retention)
    if g then
      if g == 0 then g = id end
      table.insert(fields, 'g')
      table.insert(fields, g)
      redis.call('HSET', KEYS[2], conv, g)
      local rewritten = string.gsub(stream, ':messages$', '') .. ':rewritten'
      redis.call('ZREMRANGEBYSCORE', rewritten, '-inf', '(' .. g)
    end
    redis.call('XADD', stream, 'MAXLEN', retention, '0-' .. id, unpack(fields))
    if a_key ~= '' then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', retention, '0-' .. id, unpack(fields))
      redis.call('HSETNX', '{u:' .. a_key .. '}:directs', conv, b_key .. '\\t' .. b_name)
      redis.call('HSETNX', '{u:' .. b_key .. '}:directs', conv, a_key .. '\\t' .. a_name)
    end
    if cid_key ~= '' then redis.call('SET', cid_key, id, 'EX', ttl) end
    table.insert(out, 1)
    table.insert(out, id)
  end
end
return out
"""
)

# A user's rooms and direct conversations at hello, with read markers and
# unread counts; makes the user a member of the default room first (silently).
# ARGV: user key, name, default room key, its name, now, unread cap.
# Returns {rooms: key, name, topic, last_read, unread, ...;
#          directs: conv, other key, other name, last_read, unread, ...}.
USER_STATE = (
    ROOMS_LIB
    + """
local key, name, home, cap = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[6])
ensure_room(home, ARGV[4], '', '', ARGV[5])
if redis.call('HSETNX', room(home, 'members'), key, name) == 1 then
  redis.call('SADD', user(key, 'rooms'), home)
  redis.call('HSET', user(key, 'read'), home, newest(room(home, 'messages')))
end
local marks = {}
local flat = redis.call('HGETALL', user(key, 'read'))
for j = 1, #flat, 2 do marks[flat[j]] = tonumber(flat[j + 1]) end
local rooms, directs = {}, {}
for _, rk in ipairs(redis.call('SMEMBERS', user(key, 'rooms'))) do
  local meta = redis.call('HMGET', room(rk, 'meta'), 'name', 'topic')
  if meta[1] then
    local last = marks[rk] or 0
    for _, v in ipairs({rk, meta[1], meta[2] or '', last, unread(rk, last, key, cap)}) do
      table.insert(rooms, v)
    end
  end
end
flat = redis.call('HGETALL', user(key, 'directs'))
for j = 1, #flat, 2 do
  local conv = flat[j]
  local other, other_name = string.match(flat[j + 1], '^(.-)\\t(.*)$')
  local last = marks[conv] or 0
  for _, v in ipairs({conv, other, other_name, last, unread(conv, last, key, cap)}) do
    table.insert(directs, v)
  end
end
return {rooms, directs}
"""
)

# A user's read marker and unread count in one conversation. ARGV: user key, conv, cap.
CONV_STATE = (
    ROOMS_LIB
    + """
local last = tonumber(redis.call('HGET', user(ARGV[1], 'read'), ARGV[2]) or 0)
return {last, unread(ARGV[2], last, ARGV[1], tonumber(ARGV[3]))}
"""
)

# Create a room unless it exists. ARGV: key, name, topic, created_by, created.
# Returns {created (1/0), name, topic, created_by, created}.
CREATE_ROOM = (
    ROOMS_LIB
    + """
local made = ensure_room(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
local meta = redis.call('HMGET', room(ARGV[1], 'meta'), 'name', 'topic', 'created_by', 'created')
return {made, meta[1] or ARGV[2], meta[2] or '', meta[3] or '', meta[4] or '0'}
"""
)

# Membership. ARGV: instance, origin, token, room key, room name, user key, user name.
# Returns the read marker given (the room's newest id), or -1 when already a member.
ADD_MEMBER = (
    ROOMS_LIB
    + """
local rk, rn, key, name = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('HSETNX', room(rk, 'members'), key, name) == 0 then return -1 end
redis.call('SADD', user(key, 'rooms'), rk)
local last = newest(room(rk, 'messages'))
redis.call('HSET', user(key, 'read'), rk, last)
event('join', rk, rn, key, name, '', last)
return last
"""
)

# Same ARGV as ADD_MEMBER; returns 1 when the user was a member, else -1.
REMOVE_MEMBER = (
    ROOMS_LIB
    + """
local rk, rn, key, name = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('HDEL', room(rk, 'members'), key) == 0 then return -1 end
redis.call('SREM', user(key, 'rooms'), rk)
redis.call('HDEL', user(key, 'read'), rk)
event('part', rk, rn, key, name, '', 0)
return 1
"""
)

# ARGV: instance, origin, token, room key, room name, user key, user name, topic.
SET_TOPIC = (
    ROOMS_LIB
    + """
redis.call('HSET', room(ARGV[4], 'meta'), 'topic', ARGV[8])
event('topic', ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], 0)
return 1
"""
)

# Move a read marker forward. ARGV: instance, origin, token, user key, user name,
# conv, id. For a direct conversation the event names the other user in `t`.
# Returns 1 when it moved, 0 when it was already there or further.
SET_READ = (
    ROOMS_LIB
    + """
local key, name, conv, id = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
if tonumber(redis.call('HGET', user(key, 'read'), conv) or 0) >= id then return 0 end
redis.call('HSET', user(key, 'read'), conv, id)
local room_name, peer = '', ''
if string.sub(conv, 1, 1) == '@' then
  local v = redis.call('HGET', user(key, 'directs'), conv)
  if v then peer = string.match(v, '\\t(.*)$') end
else
  room_name = redis.call('HGET', room(conv, 'meta'), 'name') or ''
end
event('read', conv, room_name, key, name, peer, id)
return 1
"""
)

# A guest whose last session ended: every membership, marker and direct
# conversation of theirs goes (not announced, as with the embedded stores).
# ARGV: user key.
FORGET_GUEST = (
    ROOMS_LIB
    + """
local key = ARGV[1]
for _, rk in ipairs(redis.call('SMEMBERS', user(key, 'rooms'))) do
  redis.call('HDEL', room(rk, 'members'), key)
end
local flat = redis.call('HGETALL', user(key, 'directs'))
for j = 1, #flat, 2 do
  local other = string.match(flat[j + 1], '^(.-)\\t')
  if other then redis.call('HDEL', user(other, 'directs'), flat[j]) end
end
redis.call('DEL', user(key, 'rooms'), user(key, 'read'), user(key, 'directs'))
return 1
"""
)

# Shared by the presence scripts: the clock, the live instances, and whether
# a user has an entry on an instance other than `me`.
_PRESENCE_LIB = """
local prefix = '{papo}:'
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local function live(instances, dead_after)
  return redis.call('ZRANGEBYSCORE', instances, now() - dead_after, '+inf')
end
local function elsewhere(others, me, key)
  for _, other in ipairs(others) do
    if other ~= me and redis.call('HEXISTS', prefix .. 'presence:' .. other, key) == 1 then
      return true
    end
  end
  return false
end
local function announce(channel, event, key, name)
  redis.call('PUBLISH', channel, cjson.encode({e = event, k = key, n = name}))
end
"""

# Bring this instance's entries up to date and announce what changed for the
# whole chat. KEYS: instances, own presence hash, channel.
# ARGV: me, dead_after, then triples (key, "sessions<TAB>name" or '', name).
SYNC = (
    _PRESENCE_LIB
    + """
local me, dead_after = ARGV[1], tonumber(ARGV[2])
local others = live(KEYS[1], dead_after)
local changed = 0
for i = 3, #ARGV, 3 do
  local key, value, name = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local had = redis.call('HEXISTS', KEYS[2], key) == 1
  if value == '' then
    if had then
      redis.call('HDEL', KEYS[2], key)
      if not elsewhere(others, me, key) then announce(KEYS[3], 'leave', key, name) changed = changed + 1 end
    end
  else
    redis.call('HSET', KEYS[2], key, value)
    if not had and not elsewhere(others, me, key) then
      announce(KEYS[3], 'join', key, name)
      changed = changed + 1
    end
  end
end
return changed
"""
)

# A heartbeat: this instance is alive; reap instances that stopped beating
# (only when ARGV[4] is '1': the caller has been beating long enough to judge).
# KEYS: instances, own presence hash, channel. ARGV: me, dead_after, hash ttl, reap.
BEAT = (
    _PRESENCE_LIB
    + """
local me, dead_after = ARGV[1], tonumber(ARGV[2])
local t = now()
redis.call('ZADD', KEYS[1], t, me)
redis.call('EXPIRE', KEYS[2], ARGV[3])
local dead = {}
if ARGV[4] == '1' then
  dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (t - dead_after))
end
local left = 0
for _, inst in ipairs(dead) do
  local hash = prefix .. 'presence:' .. inst
  local entries = redis.call('HGETALL', hash)
  redis.call('DEL', hash, prefix .. 'wake:' .. inst)
  redis.call('ZREM', KEYS[1], inst)
  local others = live(KEYS[1], dead_after)
  for i = 1, #entries, 2 do
    local key = entries[i]
    if not elsewhere(others, inst, key) then
      announce(KEYS[3], 'leave', key, string.match(entries[i + 1], '\\t(.*)$'))
      left = left + 1
    end
  end
end
return {#dead, left, redis.call('EXISTS', KEYS[2])}
"""
)

# Everyone online anywhere. KEYS: instances. ARGV: dead_after.
# Returns key, name, sessions, key, name, sessions, ...
WHO = (
    _PRESENCE_LIB
    + """
local totals, names, order = {}, {}, {}
for _, inst in ipairs(live(KEYS[1], tonumber(ARGV[1]))) do
  local entries = redis.call('HGETALL', prefix .. 'presence:' .. inst)
  for i = 1, #entries, 2 do
    local key = entries[i]
    local count, name = string.match(entries[i + 1], '^(%d+)\\t(.*)$')
    if totals[key] == nil then
      totals[key] = 0
      table.insert(order, key)
    end
    totals[key] = totals[key] + tonumber(count)
    if tonumber(count) > 0 or names[key] == nil then names[key] = name end
  end
end
local out = {}
for _, key in ipairs(order) do
  if totals[key] > 0 then
    table.insert(out, key)
    table.insert(out, names[key])
    table.insert(out, totals[key])
  end
end
return out
"""
)

# Remember when a user was last here, if the account exists. KEYS: account. ARGV: id.
LAST_SEEN = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'last_seen', ARGV[1]) end
"""

# The messages (not edits, deletions or tombstones) one user sent at a time or
# later, in the streams KEYS. ARGV: the user's key, the earliest time ('' for
# ever). Returns {entry id, fields} pairs, stream by stream, each in id order.
MESSAGES_BY = """
local out = {}
for _, stream in ipairs(KEYS) do
  local cursor = '-'
  while true do
    local r = redis.call('XRANGE', stream, cursor, '+', 'COUNT', 500)
    for _, e in ipairs(r) do
      local f, mine, entry, ts = e[2], false, false, ''
      for j = 1, #f, 2 do
        if f[j] == 'k' then mine = f[j + 1] == ARGV[1]
        elseif f[j] == 'e' then entry = true
        elseif f[j] == 't' then ts = f[j + 1] end
      end
      if mine and not entry and ts >= ARGV[2] then table.insert(out, e) end
    end
    if #r < 500 then break end
    cursor = '(' .. r[#r][1]
  end
end
return out
"""

# Raise the id counter to at least ARGV[1] (an id an instance already delivered),
# after Redis lost writes: no id is handed out twice. Returns {before, after}.
RAISE_SEQ = """
local before = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if before < floor then
  redis.call('SET', KEYS[1], floor)
  return {before, floor}
end
return {before, before}
"""
