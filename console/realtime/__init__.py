"""The real-time hub: one event-log reader per process fanning events out to its
dashboard sockets, and the feed of other processes' commits into its copy of the
state. Imports console.domain and below, never the web or Twilio side."""
