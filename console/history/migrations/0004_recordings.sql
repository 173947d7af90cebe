-- Recordings (console/history/recordings.py): a call found by its recording's SID, for
-- every playback request (each HTTP Range of it) and every delete.
CREATE INDEX calls_by_recording ON calls ((recording->>'sid')) WHERE recording IS NOT NULL;
