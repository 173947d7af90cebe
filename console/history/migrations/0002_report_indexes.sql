-- Reports (console/history/reports.py): an agent's status changes by time, for the
-- change before a range and those in it; transfers by the time they were requested.
CREATE INDEX events_agent_by_ts ON events ((data->>'username'), ts) WHERE type = 'agent.updated';
CREATE INDEX call_transfers_by_requested ON call_transfers (requested_at);
