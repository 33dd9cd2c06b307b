//! The Lua scripts the cluster thread runs in Redis (by SHA, loaded once per connection):
//! the registry's compare-and-set writes, the state records, node liveness, credentials.

/// The compare-and-set REGISTER and RESTORE share: unless a newer connection of the identity
/// is recorded (then it answers as REGISTER does), the entry KEYS[1] becomes this connection's
/// and the identity joins the set KEYS[3].
macro_rules! registry_cas {
    () => {
        r"
local held = redis.call('HMGET', KEYS[1], 'node', 'connected_at')
local newer = tonumber(held[2] or '') or 0
if newer > tonumber(ARGV[3]) then
  return {held[1] or '', 0, false, newer}
end
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'session', ARGV[2], 'connected_at', ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[4])
"
    };
}

/// Compare-and-set of the registry entry: KEYS[1] = the entry, KEYS[2] = the charge point's
/// state record, KEYS[3] = the set of identities; ARGV = node, session, connected_at,
/// identity. Returns the node that held it before (or ""), 1 when written (0 when a newer
/// connection was already recorded), the state record (or false), and the newer connection's
/// connected_at when not written.
pub(super) const REGISTER: &str = concat!(
    registry_cas!(),
    r"local record = redis.pcall('GET', KEYS[2])
if type(record) ~= 'string' then record = false end
return {held[1] or '', 1, record, 0}
"
);

/// Writes (ARGV[2] not empty) or deletes a state record, KEYS[2], unless another node holds the
/// charge point (KEYS[1]): a node that lost it must not overwrite what the new owner wrote.
pub(super) const SAVE: &str = r"
local owner = redis.call('HGET', KEYS[1], 'node')
if owner and owner ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  return redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
";

/// Removes the entry if it is still this connection's: KEYS[1], KEYS[2] = the state record,
/// KEYS[3] = the set of identities; ARGV = node, connected_at, identity. An identity that was
/// accepted stays in the set (listed as disconnected); one that never was leaves it, so
/// made-up identities cannot grow it.
pub(super) const UNREGISTER: &str = r"
local held = redis.call('HMGET', KEYS[1], 'node', 'connected_at')
if held[1] == ARGV[1] and held[2] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('ZREM', KEYS[3], ARGV[3])
  end
  return 1
end
return 0
";

/// Writes the registry entry of a charge point this node holds again, after Redis lost it:
/// REGISTER's compare-and-set (a newer connection on another node wins), then the state record
/// (ARGV[5], unless empty). KEYS and the answer as REGISTER's (no record returned).
pub(super) const RESTORE: &str = concat!(
    registry_cas!(),
    r"if ARGV[5] ~= '' then
  redis.call('SET', KEYS[2], ARGV[5])
end
return {held[1] or '', 1, false, 0}
"
);

/// Refreshes the node's liveness key, KEYS[1] (ARGV = its value, its TTL in ms): 1 when the
/// key was there, 0 when Redis lost it (or it expired) and the registry must be written again.
pub(super) const HEARTBEAT: &str = r"
local had = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return had
";

/// This node's share of the transaction ids: KEYS[1] = `{prefix}id-slots` (slot -> node),
/// KEYS[2] = `{prefix}transaction-id`; ARGV = node, slots, the slot it holds (-1: none yet,
/// take the one recorded for this node or the lowest free), the highest id it reserved.
/// Raises KEYS[2] to that id. Returns {slot, the highest id any node reserved (KEYS[2]),
/// 1 when the slot was this node's in Redis already}, or {-1, '', 0} when every slot is taken,
/// or {-2, the other node, 0} when another node claims the slot.
pub(super) const SHARE: &str = r"
local slots = tonumber(ARGV[2])
local slot = tonumber(ARGV[3])
local before = 0
if slot < 0 then
  for s = 0, slots - 1 do
    if redis.call('HGET', KEYS[1], s) == ARGV[1] then slot = s before = 1 break end
  end
end
if slot < 0 then
  for s = 0, slots - 1 do
    if redis.call('HSETNX', KEYS[1], s, ARGV[1]) == 1 then slot = s break end
  end
  if slot < 0 then return {-1, '', 0} end
else
  if redis.call('HSETNX', KEYS[1], slot, ARGV[1]) == 0 then before = 1 end
  local owner = redis.call('HGET', KEYS[1], slot)
  if owner ~= ARGV[1] then return {-2, owner, 0} end
end
local floor = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local mark = tonumber(ARGV[4])
if mark > floor then
  redis.call('SET', KEYS[2], mark)
  floor = mark
end
return {slot, tostring(floor), before}
";

/// The TLS ticket keys every node shares (`security.tls_resumption` without a key file):
/// KEYS[1] = a list of `{made at, ms}:{64 hex digits}`, newest first; ARGV = now (ms), the
/// ticket lifetime (ms), a fresh key of the caller's. Unless the newest key is younger than a
/// lifetime, the caller's becomes the newest (every node proposes one, the first to come wins);
/// the newest and the one before are kept (the latter opens tickets issued before the
/// rotation). Returns the list.
pub const TICKET_KEYS: &str = r"
local newest = redis.call('LINDEX', KEYS[1], 0)
local made = newest and tonumber(string.match(newest, '^(%d+):'))
if not made or tonumber(ARGV[1]) - made >= tonumber(ARGV[2]) then
  redis.call('LPUSH', KEYS[1], ARGV[1] .. ':' .. ARGV[3])
  redis.call('LTRIM', KEYS[1], 0, 1)
end
return redis.call('LRANGE', KEYS[1], 0, -1)
";

/// The writer's Lua scripts, loaded (`SCRIPT LOAD`) on every connect and run with `EVALSHA`:
/// a registry write sends a hash instead of the script. A server that lost them (`NOSCRIPT`,
/// after `SCRIPT FLUSH`) is treated like a dropped connection: reconnect, load, replay.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lua {
    Register,
    Save,
    Unregister,
    Restore,
    Heartbeat,
    Share,
    TicketKeys,
}

impl Lua {
    pub(super) const ALL: [Lua; 7] = [
        Lua::Register,
        Lua::Save,
        Lua::Unregister,
        Lua::Restore,
        Lua::Heartbeat,
        Lua::Share,
        Lua::TicketKeys,
    ];

    pub(super) fn source(self) -> &'static str {
        match self {
            Lua::Register => REGISTER,
            Lua::Save => SAVE,
            Lua::Unregister => UNREGISTER,
            Lua::Restore => RESTORE,
            Lua::Heartbeat => HEARTBEAT,
            Lua::Share => SHARE,
            Lua::TicketKeys => TICKET_KEYS,
        }
    }
}

/// One batch of the events stream, exactly once: KEYS[1] = the stream, KEYS[2] = the node's
/// last batch (`{run} {n}`); ARGV = run, n, MAXLEN, node, then the lines. A batch this run
/// already added (sent again after a reply that never came) is not added twice. The node's
/// key lives a day past its last batch (a resend comes within seconds; a node id that is gone
/// leaves nothing behind). Returns the lines added.
pub(super) const EVENTS_BATCH: &str = r"
local last = redis.call('GET', KEYS[2])
if last then
  local run, n = string.match(last, '^(%S+) (%d+)$')
  if run == ARGV[1] and tonumber(n) >= tonumber(ARGV[2]) then return 0 end
end
for i = 5, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'node', ARGV[4], 'line', ARGV[i])
end
redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. ARGV[2], 'PX', 86400000)
return #ARGV - 4
";
