-- Voicemails (SPEC §9): a call's message is found by its recording's SID, as a
-- conference recording is (console/history/recordings.py).
CREATE INDEX calls_by_voicemail ON calls ((voicemail->>'sid')) WHERE voicemail IS NOT NULL;
