-- Totals kept as history is written, so a report sums stored rows instead of reading
-- every row of its range (docs/history.md, reports): the agents' status intervals
-- and their totals per quarter hour and day (from agent.updated events), and the
-- calls' additive figures per quarter hour and day (from the calls rows).
--
-- agent_intervals: one row per stored agent.updated, the agent_activity view's
-- interval (status from its ts to the next change's ts, in stream order) and the
-- status before it. agent_quarters / agent_days: per agent and UTC quarter hour /
-- UTC day, the time signed in (any status but offline), on break and busy or in
-- wrap-up of the CLOSED intervals, cut at the quarter's edges, and the missed rings
-- (a 'missed' not following a 'missed') by the quarter they started in. The open
-- interval (the agent's last change) is added by the report, up to its "now".
--
-- An AFTER INSERT trigger on events maintains them: it takes each agent's advisory
-- lock after the insert (like the writer's per-call lock), then recomputes that
-- agent's intervals from the change before its first new event onward, from all
-- stored events, and moves the totals by (new rows' contributions - old rows').
-- Duplicates (ON CONFLICT DO NOTHING) are not in the transition table; two writers
-- committing out of order are serialized by the lock, and the last sees both.

CREATE TABLE agent_intervals (
  event_id text PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
  agent text NOT NULL,
  ms bigint NOT NULL, seq bigint NOT NULL,   -- the event's place in the stream
  status text,
  before text,                               -- the agent's status before this change
  started_at bigint NOT NULL,                -- the event's ts
  ended_at bigint                            -- the next change's ts; NULL: still so
);
CREATE UNIQUE INDEX agent_intervals_by_agent ON agent_intervals (agent, ms, seq);
CREATE INDEX agent_intervals_by_end ON agent_intervals (ended_at);
CREATE INDEX agent_intervals_by_start ON agent_intervals (started_at) WHERE status = 'missed';
CREATE INDEX agent_intervals_open ON agent_intervals (agent) WHERE ended_at IS NULL;

CREATE TABLE agent_quarters (
  quarter bigint NOT NULL,                   -- ms of a UTC quarter hour's start
  agent text NOT NULL,
  signed_in_ms bigint NOT NULL DEFAULT 0,
  break_ms bigint NOT NULL DEFAULT 0,
  occupied_ms bigint NOT NULL DEFAULT 0,
  missed bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (quarter, agent)
);
CREATE TABLE agent_days (
  day bigint NOT NULL,                       -- ms of a UTC midnight
  agent text NOT NULL,
  signed_in_ms bigint NOT NULL DEFAULT 0,
  break_ms bigint NOT NULL DEFAULT 0,
  occupied_ms bigint NOT NULL DEFAULT 0,
  missed bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (day, agent)
);

-- What one interval adds to each quarter hour it covers.
CREATE FUNCTION agent_interval_quarters(status text, before text, s bigint, e bigint)
RETURNS TABLE (quarter bigint, signed_in_ms bigint, break_ms bigint, occupied_ms bigint,
               missed bigint)
LANGUAGE sql IMMUTABLE ROWS 4 AS $$
  SELECT q, o, CASE WHEN status = 'break' THEN o ELSE 0 END,
         CASE WHEN status IN ('busy', 'wrap-up') THEN o ELSE 0 END, 0::bigint
  FROM generate_series(s - mod(s, 900000), e - 1, 900000) AS q,
       LATERAL (SELECT LEAST(e, q + 900000) - GREATEST(s, q) AS o) x
  WHERE e IS NOT NULL AND e > s AND status <> 'offline'
  UNION ALL
  SELECT s - mod(s, 900000), 0, 0, 0, 1
  WHERE status = 'missed' AND before IS DISTINCT FROM 'missed'
$$;

-- Add (sign 1) or take away (sign -1) the contributions of the stored intervals of
-- each agent after (ms, seq) of its bound.
CREATE FUNCTION agent_totals_move(p_agents text[], p_ms bigint[], p_seq bigint[], p_sign bigint)
RETURNS void LANGUAGE sql AS $$
  WITH parts AS (
    SELECT i.agent, c.*
    FROM unnest(p_agents, p_ms, p_seq) AS b(agent, ms, seq)
    CROSS JOIN LATERAL (SELECT * FROM agent_intervals i
                        WHERE i.agent = b.agent AND (i.ms, i.seq) > (b.ms, b.seq)
                        ORDER BY i.agent, i.ms, i.seq) i
    CROSS JOIN LATERAL agent_interval_quarters(i.status, i.before, i.started_at, i.ended_at) c
  ), quarters AS (
    INSERT INTO agent_quarters AS t (quarter, agent, signed_in_ms, break_ms, occupied_ms, missed)
    SELECT quarter, agent, p_sign * sum(signed_in_ms), p_sign * sum(break_ms),
           p_sign * sum(occupied_ms), p_sign * sum(missed)
    FROM parts GROUP BY quarter, agent
    ON CONFLICT (quarter, agent) DO UPDATE SET
      signed_in_ms = t.signed_in_ms + EXCLUDED.signed_in_ms,
      break_ms = t.break_ms + EXCLUDED.break_ms,
      occupied_ms = t.occupied_ms + EXCLUDED.occupied_ms,
      missed = t.missed + EXCLUDED.missed
  )
  INSERT INTO agent_days AS t (day, agent, signed_in_ms, break_ms, occupied_ms, missed)
  SELECT quarter - mod(quarter, 86400000), agent, p_sign * sum(signed_in_ms),
         p_sign * sum(break_ms), p_sign * sum(occupied_ms), p_sign * sum(missed)
  FROM parts GROUP BY 1, agent
  ON CONFLICT (day, agent) DO UPDATE SET
    signed_in_ms = t.signed_in_ms + EXCLUDED.signed_in_ms,
    break_ms = t.break_ms + EXCLUDED.break_ms,
    occupied_ms = t.occupied_ms + EXCLUDED.occupied_ms,
    missed = t.missed + EXCLUDED.missed
$$;

-- Recompute the intervals of ``agents`` after their bound (the second change before
-- the first new one; (-1, -1) when there are not two) from the stored events.
CREATE FUNCTION agent_intervals_rewrite(p_agents text[], p_ms bigint[], p_seq bigint[])
RETURNS void LANGUAGE sql AS $$
  INSERT INTO agent_intervals (event_id, agent, ms, seq, status, before, started_at, ended_at)
  SELECT id, agent, ms, seq, status, before, started_at, ended_at
  FROM (
    SELECT e.id, b.agent, e.ms, e.seq, e.data->>'status' AS status,
           LAG(e.data->>'status') OVER w AS before, e.ts AS started_at,
           LEAD(e.ts) OVER w AS ended_at, b.ms AS bound_ms, b.seq AS bound_seq
    FROM unnest(p_agents, p_ms, p_seq) AS b(agent, ms, seq)
    CROSS JOIN LATERAL (SELECT * FROM events e
                        WHERE e.type = 'agent.updated' AND e.data->>'username' = b.agent
                          AND (e.ms, e.seq) >= (b.ms, b.seq)
                        ORDER BY e.data->>'username', e.ms, e.seq) e
    WINDOW w AS (PARTITION BY b.agent ORDER BY e.ms, e.seq)
  ) fresh
  WHERE (ms, seq) > (bound_ms, bound_seq)
  ON CONFLICT (event_id) DO UPDATE SET
    status = EXCLUDED.status, before = EXCLUDED.before,
    started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at
$$;

-- (jit off: the planner's guesses for these small statements would compile them)
CREATE FUNCTION agent_intervals_after_insert() RETURNS trigger LANGUAGE plpgsql
SET jit = off AS $$
DECLARE
  names text[];
  bound_ms bigint[];
  bound_seq bigint[];
BEGIN
  SELECT array_agg(agent ORDER BY agent) INTO names
  FROM (SELECT DISTINCT data->>'username' AS agent FROM new_events
        WHERE type = 'agent.updated' AND data->>'username' IS NOT NULL) n;
  IF names IS NULL THEN
    RETURN NULL;
  END IF;
  -- 0x5741 "an agent's intervals"; in name order, so two writers cannot deadlock
  PERFORM pg_advisory_xact_lock(22337, hashtext(a)) FROM unnest(names) AS a ORDER BY a;
  -- from here each statement sees every event committed before the lock was granted
  SELECT array_agg(f.agent ORDER BY f.agent), array_agg(COALESCE(p.ms, -1) ORDER BY f.agent),
         array_agg(COALESCE(p.seq, -1) ORDER BY f.agent)
  INTO names, bound_ms, bound_seq
  FROM (
    SELECT DISTINCT ON (data->>'username') data->>'username' AS agent, ms, seq
    FROM new_events WHERE type = 'agent.updated' AND data->>'username' IS NOT NULL
    ORDER BY data->>'username', ms, seq
  ) f
  LEFT JOIN LATERAL (
    SELECT e.ms, e.seq FROM events e
    WHERE e.type = 'agent.updated' AND e.data->>'username' = f.agent
      AND (e.ms, e.seq) < (f.ms, f.seq)
    ORDER BY e.data->>'username' DESC, e.ms DESC, e.seq DESC
    OFFSET 1 LIMIT 1
  ) p ON true;
  PERFORM agent_totals_move(names, bound_ms, bound_seq, -1);
  PERFORM agent_intervals_rewrite(names, bound_ms, bound_seq);
  PERFORM agent_totals_move(names, bound_ms, bound_seq, 1);
  RETURN NULL;
END
$$;

-- What is already stored (an existing history), then the trigger; creating it first
-- holds back the writers' inserts (its lock) until this migration commits.
CREATE TRIGGER events_agent_intervals AFTER INSERT ON events
  REFERENCING NEW TABLE AS new_events
  FOR EACH STATEMENT EXECUTE FUNCTION agent_intervals_after_insert();

SELECT agent_intervals_rewrite(array_agg(agent), array_agg(-1::bigint), array_agg(-1::bigint))
FROM (SELECT DISTINCT data->>'username' AS agent FROM events
      WHERE type = 'agent.updated' AND data->>'username' IS NOT NULL) n;
SELECT agent_totals_move(array_agg(agent), array_agg(-1::bigint), array_agg(-1::bigint), 1)
FROM (SELECT DISTINCT agent FROM agent_intervals) n;

-- Calls: per UTC quarter hour of arrival, the additive figures of the calls that
-- arrived in it, for all calls (agent '*') and by answered_by ('' when nobody);
-- per UTC day and answered_by likewise. Kept from the calls rows themselves by
-- statement triggers (every insert, update and delete: new rows' contributions -
-- old rows'), so they always equal an aggregate of the stored calls, whoever writes
-- them. What depends on the service level threshold or is a percentile is read from
-- the calls (narrow indexes below).
CREATE TABLE call_quarters (
  quarter bigint NOT NULL,
  agent text NOT NULL,
  calls bigint NOT NULL DEFAULT 0,           -- every call, of any kind
  offered bigint NOT NULL DEFAULT 0,
  answered bigint NOT NULL DEFAULT 0,
  abandoned bigint NOT NULL DEFAULT 0,
  voicemails bigint NOT NULL DEFAULT 0,
  callbacks bigint NOT NULL DEFAULT 0,
  wait_sum bigint NOT NULL DEFAULT 0,        -- wait_ms of the answered calls that have one
  wait_n bigint NOT NULL DEFAULT 0,
  handle_sum bigint NOT NULL DEFAULT 0,      -- talk + hold + wrap-up of the answered calls
  PRIMARY KEY (agent, quarter)
);
CREATE INDEX call_quarters_by_quarter ON call_quarters (quarter);
CREATE TABLE call_days (LIKE call_quarters INCLUDING DEFAULTS);
ALTER TABLE call_days RENAME COLUMN quarter TO day;
ALTER TABLE call_days ADD PRIMARY KEY (day, agent);

-- What the calls ``before`` (taken away) and ``after`` (added) move, by quarter hour
-- and agent ('*' and answered_by), leaving out what moves nothing.
CREATE FUNCTION call_totals_delta(before calls[], after calls[])
RETURNS TABLE (quarter bigint, agent text, calls bigint, offered bigint, answered bigint, abandoned bigint,
               voicemails bigint, callbacks bigint, wait_sum bigint, wait_n bigint,
               handle_sum bigint)
LANGUAGE sql IMMUTABLE AS $$
  SELECT q, who.a, sum(sign), sum(sign * o), sum(sign * an), sum(sign * ab), sum(sign * vm),
         sum(sign * cb), sum(sign * ws), sum(sign * wn), sum(sign * hs)
  FROM (
    SELECT sign, c.arrived_at - mod(c.arrived_at, 900000) AS q, c.answered_by,
           f.o::int AS o, (f.o AND c.answered_at IS NOT NULL)::int AS an,
           (f.o AND c.answered_at IS NULL AND (c.outcome = 'abandoned') IS TRUE)::int AS ab,
           (c.outcome IS NOT DISTINCT FROM 'voicemail')::int AS vm,
           (c.outcome IS NOT DISTINCT FROM 'callback-requested')::int AS cb,
           CASE WHEN f.o AND c.answered_at IS NOT NULL THEN COALESCE(c.wait_ms, 0) ELSE 0 END
             AS ws,
           (f.o AND c.answered_at IS NOT NULL AND c.wait_ms IS NOT NULL)::int AS wn,
           CASE WHEN f.o AND c.answered_at IS NOT NULL
                THEN c.talk_ms + c.hold_ms + c.wrap_up_ms ELSE 0 END AS hs
    FROM (SELECT -1 AS sign, b.* FROM unnest(before) AS b
          UNION ALL SELECT 1, a.* FROM unnest(after) AS a) c
    CROSS JOIN LATERAL (SELECT c.kind = 'inbound' AND c.offered AS o) f
  ) r
  CROSS JOIN LATERAL (VALUES ('*'), (COALESCE(r.answered_by, ''))) AS who(a)
  GROUP BY q, who.a
  HAVING sum(sign) <> 0 OR sum(sign * o) <> 0 OR sum(sign * an) <> 0 OR sum(sign * ab) <> 0
      OR sum(sign * vm) <> 0 OR sum(sign * cb) <> 0 OR sum(sign * ws) <> 0
      OR sum(sign * wn) <> 0 OR sum(sign * hs) <> 0
$$;

-- Move the totals by what replacing ``before`` with ``after`` moves; under one lock
-- for every writer of calls (taken only when something moves): the rows of all
-- calls (agent '*') would otherwise be locked in different orders by two
-- transactions, and they would deadlock.
CREATE FUNCTION call_totals_move(before calls[], after calls[]) RETURNS void
LANGUAGE plpgsql SET jit = off AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM call_totals_delta(before, after)) THEN
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(22338, 0);  -- 0x5742 "the calls' totals"
  WITH moved AS (SELECT * FROM call_totals_delta(before, after)),
  quarters AS (
    INSERT INTO call_quarters AS t
    SELECT * FROM moved ORDER BY quarter, agent
    ON CONFLICT (agent, quarter) DO UPDATE SET
      calls = t.calls + EXCLUDED.calls, offered = t.offered + EXCLUDED.offered, answered = t.answered + EXCLUDED.answered,
      abandoned = t.abandoned + EXCLUDED.abandoned,
      voicemails = t.voicemails + EXCLUDED.voicemails,
      callbacks = t.callbacks + EXCLUDED.callbacks, wait_sum = t.wait_sum + EXCLUDED.wait_sum,
      wait_n = t.wait_n + EXCLUDED.wait_n, handle_sum = t.handle_sum + EXCLUDED.handle_sum
  )
  INSERT INTO call_days AS t
  SELECT m.quarter - mod(m.quarter, 86400000), m.agent, sum(m.calls), sum(m.offered), sum(m.answered),
         sum(m.abandoned), sum(m.voicemails), sum(m.callbacks), sum(m.wait_sum),
         sum(m.wait_n), sum(m.handle_sum)
  FROM moved m WHERE m.agent <> '*' GROUP BY 1, m.agent ORDER BY 1, m.agent
  ON CONFLICT (day, agent) DO UPDATE SET
    calls = t.calls + EXCLUDED.calls, offered = t.offered + EXCLUDED.offered, answered = t.answered + EXCLUDED.answered,
    abandoned = t.abandoned + EXCLUDED.abandoned,
    voicemails = t.voicemails + EXCLUDED.voicemails,
    callbacks = t.callbacks + EXCLUDED.callbacks, wait_sum = t.wait_sum + EXCLUDED.wait_sum,
    wait_n = t.wait_n + EXCLUDED.wait_n, handle_sum = t.handle_sum + EXCLUDED.handle_sum;
END
$$;

CREATE FUNCTION calls_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM call_totals_move(NULL::calls[], (SELECT array_agg(ROW(n.*)::calls) FROM new_calls n));
  RETURN NULL;
END
$$;
CREATE FUNCTION calls_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM call_totals_move((SELECT array_agg(ROW(o.*)::calls) FROM old_calls o),
                           (SELECT array_agg(ROW(n.*)::calls) FROM new_calls n));
  RETURN NULL;
END
$$;
CREATE FUNCTION calls_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM call_totals_move((SELECT array_agg(ROW(o.*)::calls) FROM old_calls o), NULL::calls[]);
  RETURN NULL;
END
$$;
CREATE TRIGGER calls_totals_insert AFTER INSERT ON calls REFERENCING NEW TABLE AS new_calls
  FOR EACH STATEMENT EXECUTE FUNCTION calls_after_insert();
CREATE TRIGGER calls_totals_update AFTER UPDATE ON calls
  REFERENCING OLD TABLE AS old_calls NEW TABLE AS new_calls
  FOR EACH STATEMENT EXECUTE FUNCTION calls_after_update();
CREATE TRIGGER calls_totals_delete AFTER DELETE ON calls REFERENCING OLD TABLE AS old_calls
  FOR EACH STATEMENT EXECUTE FUNCTION calls_after_delete();
-- the calls already stored, a day of arrivals at a time
DO $$
DECLARE
  day bigint;
BEGIN
  FOR day IN SELECT DISTINCT arrived_at - mod(arrived_at, 86400000) FROM calls ORDER BY 1 LOOP
    PERFORM call_totals_move(NULL::calls[], (SELECT array_agg(c) FROM calls c
                                    WHERE c.arrived_at >= day AND c.arrived_at < day + 86400000));
  END LOOP;
END
$$;

-- The rest of a report's figures, from index-only scans: answered calls' waits (the
-- 90th percentile, answered within the threshold) by arrival and by agent, abandoned
-- calls (abandoned after the threshold), and each agent's legs (calls handled).
CREATE INDEX calls_answered_waits ON calls (arrived_at) INCLUDE (wait_ms)
  WHERE kind = 'inbound' AND offered AND answered_at IS NOT NULL;
CREATE INDEX calls_answered_waits_by_agent ON calls (answered_by, arrived_at) INCLUDE (wait_ms)
  WHERE kind = 'inbound' AND offered AND answered_at IS NOT NULL AND answered_by IS NOT NULL;
CREATE INDEX calls_abandoned ON calls (arrived_at) INCLUDE (wait_ms, ended_at, answered_by)
  WHERE kind = 'inbound' AND offered AND answered_at IS NULL AND outcome = 'abandoned';
CREATE INDEX call_legs_handled ON call_legs (agent, joined_at) INCLUDE (call_id)
  WHERE role = 'agent';
