"""The real-time hub: one event-log reader per process fanning events out to its
dashboard sockets. Imports console.domain and below, never the web or Twilio side."""
