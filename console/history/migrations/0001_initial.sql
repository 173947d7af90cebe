CREATE TABLE events (
  id text PRIMARY KEY,                -- the stream id "<ms>-<seq>"
  ms bigint NOT NULL, seq bigint NOT NULL,
  type text NOT NULL,
  ts bigint NOT NULL,                 -- the event's ts: the app's clock, ms
  conference text,                    -- NULL when the event has none
  audience text NOT NULL,             -- as in the stream ('*', names, 'agents:…', '')
  data jsonb NOT NULL
);
CREATE INDEX events_by_conference ON events (conference, ms, seq) WHERE conference IS NOT NULL;
CREATE INDEX events_by_agent ON events ((data->>'username'), ms, seq) WHERE type = 'agent.updated';
CREATE INDEX events_by_ts ON events (ts);

CREATE TABLE calls (
  id text PRIMARY KEY,                -- the customer's CallSid (= conference name) or a callback id
  kind text NOT NULL DEFAULT 'inbound',   -- inbound | callback
  origin text,
  from_number text,
  arrived_at bigint NOT NULL,
  offered boolean NOT NULL DEFAULT true,  -- reached the line during hours
  answered_at bigint,
  answered_by text,
  ended_at bigint,
  outcome text,                       -- completed | abandoned | voicemail | callback-requested | closed-hours | no-agents; NULL while live
  wait_ms bigint,
  talk_ms bigint NOT NULL DEFAULT 0,
  hold_ms bigint NOT NULL DEFAULT 0,
  wrap_up_ms bigint NOT NULL DEFAULT 0,
  disposition text,
  notes text,
  recording jsonb,
  voicemail jsonb,
  agents text[] NOT NULL DEFAULT '{}', -- every agent on the call (legs, transfers): who may read it
  updated_at bigint NOT NULL
);
CREATE INDEX calls_by_arrival ON calls (arrived_at DESC, id DESC);
CREATE INDEX calls_by_agent ON calls USING gin (agents);
CREATE INDEX calls_by_number ON calls (from_number);

CREATE TABLE call_legs (
  call_id text NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
  position int NOT NULL,              -- 0, 1, … in join order
  call_sid text NOT NULL,
  agent text NOT NULL,
  role text NOT NULL,                 -- agent | supervisor | external
  joined_at bigint NOT NULL,
  left_at bigint,
  hold_ms bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (call_id, position)
);
CREATE INDEX call_legs_by_agent ON call_legs (agent, joined_at);

CREATE TABLE call_transfers (
  call_id text NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
  id text NOT NULL,
  status text NOT NULL,
  requested_at bigint,
  ended_at bigint,
  data jsonb NOT NULL,                -- the transfer shape (docs/api.md) as last reported
  PRIMARY KEY (call_id, id)
);

-- Every status interval of every agent, from the agent.updated events.
CREATE VIEW agent_activity AS
SELECT data->>'username' AS agent, data->>'status' AS status, data->>'reason' AS reason,
       ts AS started_at,
       LEAD(ts) OVER (PARTITION BY data->>'username' ORDER BY ms, seq) AS ended_at
FROM events WHERE type = 'agent.updated';
